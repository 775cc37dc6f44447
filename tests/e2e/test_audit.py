"""``audit`` against the real API server: it finds what admission let through or could not see."""

from __future__ import annotations

import json
import subprocess

import pytest

from testkit.controlplane import ControlPlane
from testkit.harness import EXE, Kubectl
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
    found = {(e["namespace"], e["name"]): e for e in json.loads(p.stdout)}
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
