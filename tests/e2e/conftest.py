"""End-to-end fixtures: real etcd + kube-apiserver, real ``waypoint-webhook serve`` with the live
view (authenticated as its own ServiceAccount, so RBAC is exercised), registered through the
project's own webhook configurations, and driven with the real kubectl."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from testkit.controlplane import ControlPlane
from testkit.harness import Kubectl, apply_identity, probe_denial, running_cluster, webhook_configs
from testkit.webhook_process import Webhook, start_webhook


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("cp")) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubectl(cluster: ControlPlane) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


@pytest.fixture(scope="session")
def webhook(cluster: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    apply_identity(kubectl)
    wh = start_webhook(cluster, kubectl, tmp_path_factory.mktemp("webhook"))
    kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
    probe_denial(kubectl)
    yield wh
    wh.stop(15)


@pytest.fixture
def ns(kubectl: Kubectl, webhook: Webhook) -> str:
    """A fresh ambient namespace per test: without a controller-manager, namespaces never finish deleting."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "istio.io/dataplane-mode=ambient")
    return name
