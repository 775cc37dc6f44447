"""The seed's workflows once more, on the Gateway API CRDs the seed installs (v1.3.0), on a cluster
of their own: Gateway API v1.6's safe-upgrades policy refuses an older bundle over it, so the
shared cluster (v1.6) cannot go back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.controlplane import ControlPlane
from testkit.crds import SEED_GATEWAY_API_MODULE
from testkit.harness import Kubectl, apply_identity, install_crds, probe_denial, running_cluster, webhook_configs
from testkit.webhook_process import Webhook, start_webhook
from tests.e2e import seed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def seed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    def v1_3(kubectl: Kubectl) -> None:
        install_crds(kubectl, SEED_GATEWAY_API_MODULE)

    with running_cluster(tmp_path_factory.mktemp("seed-cp"), setup=v1_3) as cp:
        yield cp


@pytest.fixture(scope="module")
def seed_webhook(seed_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    kubectl = Kubectl(seed_cluster.kubeconfig)
    apply_identity(kubectl)
    wh = start_webhook(seed_cluster, kubectl, Path(tmp_path_factory.mktemp("seed-webhook")))
    kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
    probe_denial(kubectl)
    yield wh
    wh.stop(15)


def test_the_seed_installs_gateway_api_v1_3(seed_cluster: ControlPlane, seed_webhook: Webhook) -> None:
    kubectl = Kubectl(seed_cluster.kubeconfig)
    versions = kubectl(
        "get", "crd", "gateways.gateway.networking.k8s.io", "-o", "jsonpath={.metadata.annotations}"
    ).stdout
    assert "v1.3.0" in versions
    seed.run(kubectl)
