"""The continuous audit on a real kube-apiserver (issue 11, items 2 and 3): ``serve --audit`` as the
Deployment runs it, its PolicyReports (Kyverno's CRDs, through the Go module proxy), its metrics,
the Lease between two servers, and a CRD installed after the audit started.

A control plane of its own: the objects must exist before any webhook is registered."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.harness import (
    REPORT_CRDS,
    Kubectl,
    apply_identity,
    install_crds,
    install_report_crds,
    make_ready,
    policy_reports,
    running_auditor,
    running_cluster,
    wait_until,
)
from testkit.webhook_process import Webhook, start_webhook

pytestmark = pytest.mark.e2e
UW = "istio.io/use-waypoint"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}


def _setup(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    apply_identity(kubectl)


@pytest.fixture(scope="module")
def audit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("audit-cp"), setup=_setup) as cp:
        yield cp


@pytest.fixture(scope="module")
def k(audit_cluster: ControlPlane) -> Kubectl:
    return Kubectl(audit_cluster.kubeconfig)


def finding_count(metrics: str, code: str, kind: str, namespace: str) -> float:
    total = 0.0
    for m in re.finditer(r"^waypoint_webhook_audit_findings\{([^}]*)\} (\S+)$", metrics, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if (labels["code"], labels["kind"], labels["namespace"]) == (code, kind, namespace):
            total += float(m.group(2))
    return total


def gauge(metrics: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else None


def holder(k: Kubectl) -> str:
    p = k(
        "get",
        "lease",
        "waypoint-webhook-audit",
        "-n",
        "waypoint-webhook",
        "-o",
        "jsonpath={.spec.holderIdentity}",
        check=False,
    )
    return p.stdout if p.returncode == 0 else ""


def service(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"ports": [{"port": 80}]}}  # fmt: skip


def waypoint(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


@pytest.fixture(scope="module")
def broken(k: Kubectl) -> str:
    """Objects admission would deny or warn about, created while no webhook is registered."""
    ns = "shop"
    k.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": AMBIENT}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stale", "labels": {**AMBIENT, UW: "gone"}}},
            waypoint("wp", ns),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "typo", "namespace": ns, "labels": {UW: "None"}},
                "spec": {"ports": [{"port": 80}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews", "namespace": ns, "labels": {UW: "wp"}},
                "spec": {"ports": [{"port": 80}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "plain", "namespace": ns},
                "spec": {"ports": [{"port": 80}]},
            },
        ]
    )
    make_ready(k, "wp", ns)
    return ns


@pytest.fixture(scope="module")
def server_a(
    audit_cluster: ControlPlane, k: Kubectl, broken: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    install_report_crds(k)
    wh = start_webhook(audit_cluster, k, tmp_path_factory.mktemp("audit-a"), ["--audit"])
    yield wh
    wh.stop()


def test_objects_created_before_the_webhook_are_reported(k: Kubectl, server_a: Webhook, broken: str) -> None:
    want = {("Service", broken, "typo"), ("Namespace", "", "stale")}
    found = wait_until(lambda: (r := policy_reports(k)) and set(r) >= want and r, 60, "the first reports")
    assert set(found) == {("Service", broken, "typo"), ("Namespace", "", "stale")}, found
    typo = found[("Service", broken, "typo")]
    assert typo["kind"] == "PolicyReport" and typo["metadata"]["namespace"] == broken
    assert typo["summary"]["fail"] == 1 and typo["results"][0]["rule"] == "InvalidUseWaypoint"
    assert typo["results"][0]["result"] == "fail" and typo["results"][0]["policy"] == "waypoint-webhook"
    uid = k("get", "service", "typo", "-n", broken, "-o", "jsonpath={.metadata.uid}").stdout
    assert typo["scope"]["uid"] == uid and typo["metadata"]["ownerReferences"][0]["uid"] == uid
    assert found[("Namespace", "", "stale")]["kind"] == "ClusterPolicyReport"
    assert ("Service", broken, "reviews") not in found and ("Service", broken, "plain") not in found

    # What a user sees: one line per broken object, with Kyverno's columns.
    table = k("get", "policyreports", "-A").stdout.splitlines()
    assert table[0].split()[:5] == ["NAMESPACE", "NAME", "KIND", "NAME", "PASS"], table[0]
    row = next(line.split() for line in table if " typo " in f" {line} ")
    assert row[0] == broken and row[2:4] == ["Service", "typo"] and row[4:7] == ["0", "1", "0"], row
    assert any(
        line.split()[1:3] == ["Namespace", "stale"] for line in k("get", "clusterpolicyreports").stdout.splitlines()
    )

    metrics = wait_until(
        lambda: (m := server_a.metrics()) and gauge(m, "waypoint_webhook_audit_up") == 1 and m, 30, "audit metrics"
    )
    assert finding_count(metrics, "InvalidUseWaypoint", "Service", broken) == 1
    assert finding_count(metrics, "WaypointNotFound", "Namespace", "") == 1
    assert gauge(metrics, "waypoint_webhook_audit_leader") == 1
    assert (gauge(metrics, "waypoint_webhook_audit_last_full_pass_timestamp_seconds") or 0) > time.time() - 300


def test_deleting_a_waypoint_reports_its_consumers_within_seconds_and_fixing_it_clears_them(
    k: Kubectl, server_a: Webhook, broken: str
) -> None:
    key = ("Service", broken, "reviews")
    wait_until(lambda: ("Service", broken, "typo") in policy_reports(k), 60, "the first reports")
    gw = json.loads(k("get", "gateway", "wp", "-n", broken, "-o", "json").stdout)
    started = time.monotonic()
    k("delete", "gateway", "wp", "-n", broken)
    report = wait_until(lambda: policy_reports(k).get(key), 15, "a report on the consumer of the deleted waypoint")
    appeared = time.monotonic() - started
    assert [r["rule"] for r in report["results"]] == ["WaypointNotFound"] and report["summary"]["warn"] == 1
    wait_until(
        lambda: finding_count(server_a.metrics(), "WaypointNotFound", "Service", broken) == 1,
        15,
        "the finding in /metrics",
    )
    for drop in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        gw["metadata"].pop(drop, None)
    gw.pop("status", None)
    started = time.monotonic()
    k.apply(gw)
    make_ready(k, "wp", broken)
    wait_until(lambda: key not in policy_reports(k), 15, "the consumer's report to be deleted")
    cleared = time.monotonic() - started
    wait_until(
        lambda: finding_count(server_a.metrics(), "WaypointNotFound", "Service", broken) == 0,
        15,
        "the finding to leave /metrics",
    )
    print(f"report appeared {appeared:.1f}s after the delete, cleared {cleared:.1f}s after the fix")


def test_a_policy_whose_service_loses_its_waypoint_is_reported_and_cleared(k: Kubectl, server_a: Webhook) -> None:
    """A7 in the continuous audit: an L7 DENY on a Service that no waypoint serves is reported on
    the policy (PolicyTargetNotBound), and binding the Service clears it: a Service's change
    re-judges the policies that target it (the reverse index), not only the Service."""
    ns = "policies"
    k.apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": AMBIENT}}, service("api", ns, {})]
    )
    k.apply(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "api-deny-admin", "namespace": ns},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
                "action": "DENY",
                "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}],
            },
        }
    )
    key = ("AuthorizationPolicy", ns, "api-deny-admin")
    report = wait_until(lambda: policy_reports(k).get(key), 30, "a report on the unenforced policy")
    assert [r["rule"] for r in report["results"]] == ["PolicyTargetNotBound"], report["results"]
    assert report["kind"] == "PolicyReport" and report["metadata"]["namespace"] == ns
    k.apply(waypoint("wp", ns))
    make_ready(k, "wp", ns)
    k("label", "service", "api", "-n", ns, f"{UW}=wp")
    wait_until(lambda: key not in policy_reports(k), 30, "the policy's report to be cleared once its Service is bound")


def test_two_servers_do_not_fight_and_the_second_takes_over(
    audit_cluster: ControlPlane, k: Kubectl, server_a: Webhook, broken: str, tmp_path: Path
) -> None:
    wait_until(lambda: ("Service", broken, "typo") in policy_reports(k), 60, "the first reports")
    leader = wait_until(lambda: holder(k), 30, "a Lease holder")
    b = start_webhook(audit_cluster, k, tmp_path / "b", ["--audit"])
    try:
        wait_until(lambda: gauge(b.metrics(), "waypoint_webhook_audit_up") == 1, 60, "server B's audit")
        before = {key: r["metadata"]["resourceVersion"] for key, r in policy_reports(k).items()}
        time.sleep(8)  # several renewals and B's full pass
        assert holder(k) == leader
        standby = b.metrics()
        assert gauge(standby, "waypoint_webhook_audit_leader") == 0
        # Once per cluster (issue 18, item 3): the standby holds no view and audits nothing.
        assert gauge(standby, "waypoint_webhook_audit_standby") == 1
        assert gauge(standby, "waypoint_webhook_audit_objects") == 0
        assert "waypoint_webhook_audit_findings{" not in standby
        assert {key: r["metadata"]["resourceVersion"] for key, r in policy_reports(k).items()} == before

        server_a.stop()  # releases the Lease on its way out
        wait_until(lambda: holder(k) not in ("", leader), 30, "server B to take the Lease")
        wait_until(lambda: gauge(b.metrics(), "waypoint_webhook_audit_leader") == 1, 30, "B to lead")
        wait_until(lambda: (gauge(b.metrics(), "waypoint_webhook_audit_objects") or 0) > 0, 30, "B to audit")
        assert gauge(b.metrics(), "waypoint_webhook_audit_standby") == 0
        time.sleep(3)
        # B found every report already right: nothing rewritten (or deleted) on the failover, though
        # it began watching only once it led.
        assert {key: r["metadata"]["resourceVersion"] for key, r in policy_reports(k).items()} == before

        # The Lease taken from B: B drops its view and goes back to standby, then leads again.
        steal = {"spec": {"holderIdentity": "thief", "leaseDurationSeconds": 3600,
                          "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}}  # fmt: skip
        k("patch", "lease", "waypoint-webhook-audit", "-n", "waypoint-webhook", "--type=merge", "-p", json.dumps(steal))
        wait_until(
            lambda: (m := b.metrics()) and gauge(m, "waypoint_webhook_audit_standby") == 1 and m,
            30,
            "B back to standby after losing the Lease",
        )
        assert gauge(b.metrics(), "waypoint_webhook_audit_objects") == 0
        assert gauge(b.metrics(), "waypoint_webhook_audit_up") == 1
        give_back = {"spec": {"holderIdentity": "", "leaseDurationSeconds": 1}}
        k(
            "patch",
            "lease",
            "waypoint-webhook-audit",
            "-n",
            "waypoint-webhook",
            "--type=merge",
            "-p",
            json.dumps(give_back),
        )
        wait_until(lambda: (gauge(b.metrics(), "waypoint_webhook_audit_objects") or 0) > 0, 60, "B to lead again")
        time.sleep(3)
        assert {key: r["metadata"]["resourceVersion"] for key, r in policy_reports(k).items()} == before
        k("label", "service", "typo", "-n", broken, f"{UW}=wp", "--overwrite")  # fixed: B prunes the report
        wait_until(
            lambda: ("Service", broken, "typo") not in policy_reports(k), 15, "B to delete the fixed object's report"
        )
    finally:
        b.stop()


def test_report_crd_installed_after_the_audit_started(
    audit_cluster: ControlPlane, k: Kubectl, broken: str, tmp_path: Path
) -> None:
    """The audit runs without the CRD (metrics only), then writes reports once it appears."""
    k("delete", *REPORT_CRDS, "--wait=true")
    status = tmp_path / "status.json"
    args = ["--status-file", str(status), "--report-retry", "1", "--lease-retry", "0.5"]
    with running_auditor(audit_cluster, k, tmp_path, *args) as (proc, log):

        def current() -> dict[str, Any] | None:
            try:
                got: dict[str, Any] = json.loads(status.read_text())
                return got
            except (OSError, ValueError):
                return None

        s = wait_until(
            lambda: (c := current()) and c["last_full_pass"] and c["leader"] and c,
            60,
            f"the auditor's first pass\n{log}",
        )
        assert any(row[:3] == ["WaypointNotFound", "warn", "Namespace"] for row in s["findings"]), s
        time.sleep(2)
        assert (current() or {}).get("reports_available") is False, log.read_text()
        assert "no report CRD installed" in log.read_text() and proc.poll() is None
        install_report_crds(k)
        wait_until(lambda: ("Namespace", "", "stale") in policy_reports(k), 30, "reports once the CRD exists")
        # A deleted object's report goes with it (no garbage collector runs here: the audit deletes it).
        k.apply(service("doomed", broken, {UW: "None"}))
        wait_until(lambda: ("Service", broken, "doomed") in policy_reports(k), 30, "the report on a broken Service")
        k("delete", "service", "doomed", "-n", broken)
        wait_until(
            lambda: ("Service", broken, "doomed") not in policy_reports(k), 30, "the deleted Service's report to go"
        )
    assert holder(k) == "", "the auditor releases the Lease on SIGTERM"
    yaml.safe_load(k("get", "clusterpolicyreports", "-o", "yaml").stdout)
