"""``audit`` and ``check --kubeconfig`` against the real API server: they find what admission let
through or could not see, and say in one line what they could not read: a forbidden resource (a
restricted ServiceAccount), missing CRDs (a cluster without Gateway API), a stopped API server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.harness import EXE, Kubectl, running_cluster
from testkit.webhook_process import Webhook

pytestmark = pytest.mark.e2e
UW = "istio.io/use-waypoint"


def test_audit_finds_objects_broken_before_or_around_admission(
    cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook, ns: str
) -> None:
    # Admitted because the namespace is excluded from the webhook (kube-node-lease)...
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"audit-{ns}", "namespace": "kube-node-lease", "labels": {UW: "None"}},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    # ...and broken later by a change elsewhere: its waypoint deleted (only a warning at the time).
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "wp", "namespace": ns},
            "spec": {"gatewayClassName": "istio-waypoint"},
        }
    )
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "reviews", "namespace": ns, "labels": {UW: "wp"}},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    kubectl("delete", "gateway", "wp", "-n", ns)

    p = subprocess.run(
        [EXE, "audit", "--kubeconfig", str(cluster.kubeconfig), "-o", "json", "--fail-on", "deny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stderr
    found = {(e["namespace"], e["name"]): e for e in json.loads(p.stdout)["results"]}
    excluded = found[("kube-node-lease", f"audit-{ns}")]
    assert excluded["allowed"] is False and excluded["findings"][0]["code"] == "InvalidUseWaypoint"
    assert excluded["source"] == "cluster"
    assert [f["code"] for f in found[(ns, "reviews")]["findings"]] == ["WaypointNotFound"]
    assert "# services:" in p.stderr  # progress on stderr

    text = subprocess.run(
        [EXE, "audit", "--kubeconfig", str(cluster.kubeconfig), "--namespace", ns],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert text.returncode == 0 and f"namespace {ns}" in text.stdout and "kube-node-lease" not in text.stdout


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def _restricted(kubectl: Kubectl, cluster: ControlPlane, ns: str, tmp: Path) -> Path:
    """A ServiceAccount that may read what the webhook's view reads in one namespace only."""
    sa = f"reader-{ns}"
    kubectl("create", "serviceaccount", sa, "-n", ns)
    kubectl.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": sa, "namespace": ns},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["get", "list"]},
                {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways"], "verbs": ["get", "list"]},
                {
                    "apiGroups": ["networking.istio.io"],
                    "resources": ["serviceentries", "workloadentries"],
                    "verbs": ["list"],
                },
            ],
        }
    )
    kubectl("create", "rolebinding", sa, "-n", ns, f"--role={sa}", f"--serviceaccount={ns}:{sa}")
    token = kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    return cluster.kubeconfig_for_token(token, tmp / f"{sa}.kubeconfig")


def test_audit_as_a_restricted_account_names_what_it_cannot_read(
    cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook, ns: str, tmp_path: Path
) -> None:
    config = _restricted(kubectl, cluster, ns, tmp_path)
    everywhere = _run("audit", "--kubeconfig", str(config), "-o", "json")
    assert everywhere.returncode == 3, everywhere.stdout
    report = json.loads(everywhere.stdout)
    assert "forbidden" in report["clusterError"] and "waypoint-webhook-view" in report["clusterError"]
    assert f"system:serviceaccount:{ns}:reader-{ns}" in report["clusterError"], "names who"
    assert "\n" not in report["clusterError"] and "Traceback" not in everywhere.stderr

    scoped = _run("audit", "--kubeconfig", str(config), "-n", ns, "-o", "json")
    report = json.loads(scoped.stdout)
    assert scoped.returncode == 0, (scoped.stdout, scoped.stderr)
    notices = " ".join(report["notices"])
    assert "deployments.apps: skipped" in notices, "workloads it may not list are named, not fatal"
    assert "gatewayclasses.gateway.networking.k8s.io: not readable" in notices
    assert "gateways: not listed cluster-wide" in notices, "then listed in the namespace alone"
    assert any(
        line.startswith("# services: ")
        for line in _run("audit", "--kubeconfig", str(config), "-n", ns).stderr.splitlines()
    )


def test_check_against_the_live_cluster_merged_with_files(
    cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook, ns: str, tmp_path: Path
) -> None:
    """``check --kubeconfig``: would this apply break what is there? The waypoint lives in the
    cluster, the consumer in the file."""
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "live-wp", "namespace": ns, "labels": {"istio.io/waypoint-for": "workload"}},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }
    )
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": ns, "labels": {UW: "live-wp"}}}
    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump(svc))
    p = _run("check", "--kubeconfig", str(cluster.kubeconfig), "-o", "json", str(f))
    report = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr
    # The live waypoint is judged as stored: no istiod here has given it an address.
    assert sorted(x["code"] for x in report["results"][0]["findings"]) == ["UnsupportedTrafficType", "WaypointNotReady"]
    offline = json.loads(_run("check", "-o", "json", str(f)).stdout)
    assert "WaypointNotFound" in [x["code"] for x in offline["results"][0]["findings"]]


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster without Gateway API or Istio CRDs."""

    def nothing(kubectl: Kubectl) -> None:
        return None

    with running_cluster(tmp_path_factory.mktemp("bare"), setup=nothing) as cp:
        yield cp


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"ports": [{"port": 80}]},
    }


def test_missing_crds_are_named_and_the_rest_still_audited(bare_cluster: ControlPlane) -> None:
    Kubectl(bare_cluster.kubeconfig).apply(_service("typo", {UW: "None"}))
    p = _run("audit", "--kubeconfig", str(bare_cluster.kubeconfig), "-o", "json")
    report = json.loads(p.stdout)
    assert p.returncode == 1, "the Service's denial is still found"
    assert any(r["name"] == "typo" for r in report["results"])
    notices = " ".join(report["notices"])
    for crd in (
        "gateways.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
        "serviceentries.networking.istio.io",
    ):
        assert f"{crd}: not served" in notices
    asked = _run("audit", "--kubeconfig", str(bare_cluster.kubeconfig), "--kind", "ServiceEntry")
    assert asked.returncode == 3 and "serviceentries.networking.istio.io is not served" in asked.stdout


def test_a_stopped_api_server_is_exit_3_in_one_line(bare_cluster: ControlPlane) -> None:
    bare_cluster.stop_apiserver()
    p = _run("audit", "--kubeconfig", str(bare_cluster.kubeconfig))
    assert p.returncode == 3
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"waypoint-webhook audit: cannot reach the API server at {bare_cluster.url}")


def test_explain_walks_a_live_object(cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook, ns: str) -> None:
    kubectl.apply(
        [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "wp", "namespace": ns},
                "spec": {
                    "gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews", "namespace": ns, "labels": {UW: "wp"}},
                "spec": {"ports": [{"port": 80}]},
            },
        ]
    )
    p = _run("explain", "svc/reviews", "-n", ns, "--kubeconfig", str(cluster.kubeconfig), "-o", "json")
    out = json.loads(p.stdout)
    assert p.returncode == 0, p.stderr
    assert [s["rule"] for s in out["steps"]][:4] == ["R1", "L2", "W1", "W2"]
    assert "not ready" in out["noWaypointBecause"], "no istiod here gives the waypoint an address"
    assert [f["code"] for f in out["findings"]] == ["WaypointNotReady"]
