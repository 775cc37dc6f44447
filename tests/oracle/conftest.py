"""The differential tier: the real istiod as the oracle for how waypoint configuration resolves.

One kube-apiserver with the Gateway API and every Istio CRD; istiod (pilot-discovery, built from
the Go module proxy by ``istiod/build.sh``) runs out of cluster against it in "replay" mode:
its Gateway controllers are off and the tests write each Gateway's ``status.addresses``
themselves. The webhook under test runs beside it with its live view, *not* registered, so
that every case, broken ones included, reaches the cluster for istiod to resolve.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.crds import crd_documents, istio_crds_file
from testkit.harness import Kubectl, apply_identity, install_crds, running_cluster
from testkit.webhook_process import Webhook, start_webhook
from tests.oracle.istiod_process import Istiod, start_istiod, stop


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test that crashes istiod (A5) runs last, whatever file the others are in."""
    items.sort(key=lambda item: item.get_closest_marker("crashes_istiod") is not None)


def _setup(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crd_documents((istio_crds_file(),))))
    kubectl("create", "namespace", "istio-system")


@pytest.fixture(scope="session")
def oracle_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("oracle-cp"), setup=_setup) as cp:
        yield cp


@pytest.fixture(scope="session")
def oracle_kubectl(oracle_cluster: ControlPlane) -> Kubectl:
    return Kubectl(oracle_cluster.kubeconfig)


@pytest.fixture(scope="session")
def istiod(oracle_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Istiod]:
    proc = start_istiod(oracle_cluster.kubeconfig, tmp_path_factory.mktemp("istiod"))
    yield proc
    stop(proc.proc)


@pytest.fixture(scope="session")
def unregistered_webhook(
    oracle_cluster: ControlPlane, oracle_kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    apply_identity(oracle_kubectl)
    wh = start_webhook(oracle_cluster, oracle_kubectl, tmp_path_factory.mktemp("oracle-webhook"))
    yield wh
    stop(wh.proc)
