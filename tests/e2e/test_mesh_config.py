"""V1 at admission: the live view follows istiod's MeshConfig (ConfigMap ``istio-system/istio``)
when the optional Role of manifests/mesh-config/ lets it, on a cluster of its own (a visibility
policy would change every other test's ServiceEntries). Without the Role the view still syncs and
V1 is simply not judged; with it, a ServiceEntry of visibility NAMESPACE naming a waypoint in
another namespace is denied, and the verdict follows the ConfigMap as it changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.harness import (
    ROOT,
    Kubectl,
    apply_identity,
    make_ready,
    probe_denial,
    running_cluster,
    wait_until,
    webhook_configs,
)
from testkit.webhook_process import Webhook, start_webhook

pytestmark = pytest.mark.e2e
UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"


def _mesh(visibility: str) -> dict[str, Any]:
    mesh = {"serviceEntryVisibility": {"defaultVisibility": visibility}}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump(mesh)},
    }


@pytest.fixture(scope="module")
def mesh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("mesh-cp")) as cp:
        yield cp


@pytest.fixture(scope="module")
def kubectl(mesh_cluster: ControlPlane) -> Kubectl:
    return Kubectl(mesh_cluster.kubeconfig)


@pytest.fixture(scope="module")
def mesh_webhook(
    mesh_cluster: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    apply_identity(kubectl)
    kubectl("create", "namespace", "istio-system")
    kubectl.apply(_mesh("NAMESPACE"))
    wh = start_webhook(mesh_cluster, kubectl, Path(tmp_path_factory.mktemp("mesh-webhook")))
    kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
    probe_denial(kubectl)
    for n in ("consumer", "edge"):
        kubectl("create", "namespace", n)
        kubectl("label", "namespace", n, "istio.io/dataplane-mode=ambient")
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "egress", "namespace": "edge"},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE", "allowedRoutes": {"namespaces": {"from": "All"}}}]},
    }  # fmt: skip
    kubectl.apply(gateway)
    make_ready(kubectl, "egress", "edge")
    yield wh
    wh.stop(15)


def _entry(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "consumer", "labels": {UW: "egress", UWN: "edge"}},
        "spec": {"hosts": [f"{name}.example.com"], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}], "resolution": "DNS"},
    }  # fmt: skip


def test_without_the_role_v1_is_not_judged_and_the_view_syncs(kubectl: Kubectl, mesh_webhook: Webhook) -> None:
    assert kubectl.apply(_entry("first")).returncode == 0, "the MeshConfig is unreadable: no V1 denial"
    log = Path(mesh_webhook.log).read_text()
    assert "mesh-config: not readable" in log and "ServiceEntry visibility (V1) is not checked" in log


def test_with_the_role_the_verdict_follows_the_mesh_config(kubectl: Kubectl, mesh_webhook: Webhook) -> None:
    kubectl.apply(list(yaml.safe_load_all((ROOT / "manifests" / "mesh-config" / "rbac.yaml").read_text())))
    denied = wait_until(
        lambda: (p := kubectl.apply(_entry("second"), "--dry-run=server", check=False)) and p.returncode != 0 and p,
        45,
        "the view to read the MeshConfig once it may (it looks again every 30 s)",
    )
    assert "CrossNamespaceWaypointForbidden" in denied.stderr
    kubectl.apply(_mesh("PUBLIC"))
    allowed = wait_until(
        lambda: (p := kubectl.apply(_entry("second"), check=False)) and p.returncode == 0 and p,
        15,
        "the verdict to follow the ConfigMap",
    )
    assert "created" in allowed.stdout
