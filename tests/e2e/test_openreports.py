"""The continuous audit writing OpenReports (issue 21 item 4) on a real kube-apiserver: the
``openreports.io/v1alpha1`` CRDs from the Go module proxy, the auditor as the Deployment runs it
(the shipped RBAC, its service account's token).

- Only OpenReports installed: ``auto`` writes ``Report``/``ClusterReport`` objects, valid for
  their CRDs (the API server validates them), and prunes them as PolicyReports are pruned.
- Thousands of findings in one namespace (a ServiceEntry with 3,000 broken endpoints, plus more
  broken objects beside it): every report stays far below etcd's request limit, the one report
  capped at ``MAX_RESULTS`` results with a last result saying how many were cut, its summary
  counting them all.
- Both groups installed: ``auto`` moves the reports to wgpolicyk8s.io (what existing installs
  read) and ``--report-api openreports.io`` moves them back, deleting ours in the other group.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.controlplane import ControlPlane
from testkit.harness import (
    OPENREPORTS,
    Kubectl,
    apply_identity,
    install_crds,
    install_openreports_crds,
    install_report_crds,
    policy_reports,
    running_auditor,
    running_cluster,
    wait_until,
)
from webhook.audit import reports

pytestmark = pytest.mark.e2e
UW = "istio.io/use-waypoint"
NS = "bulk"
ENDPOINTS = 3000
SERVICES = 40
LIMIT = 256 * 1024  # far below etcd's 1.5 MiB request limit


def _setup(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    apply_identity(kubectl)
    install_openreports_crds(kubectl)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("openreports-cp"), setup=_setup) as cp:
        yield cp


@pytest.fixture(scope="module")
def k(cluster: ControlPlane) -> Kubectl:
    k = Kubectl(cluster.kubeconfig)
    endpoints = [{"address": f"10.1.{i // 250}.{i % 250 + 1}", "labels": {UW: "None"}} for i in range(ENDPOINTS)]
    services = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": NS, "labels": {UW: "None"}},
         "spec": {"ports": [{"port": 80}]}}
        for i in range(SERVICES)
    ]  # fmt: skip
    k.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"istio.io/dataplane-mode": "ambient"}}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stale", "labels": {UW: "gone"}}},
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": "many", "namespace": NS},
                "spec": {"hosts": ["many.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                         "resolution": "STATIC", "endpoints": endpoints},
            },
            *services,
        ]
    )  # fmt: skip
    return k


def open_reports(k: Kubectl) -> dict[tuple[str, str, str], dict[str, Any]]:
    return policy_reports(k, OPENREPORTS)


def status(path: Path) -> dict[str, Any]:
    try:
        got: dict[str, Any] = json.loads(path.read_text())
        return got
    except (OSError, ValueError):
        return {}


def test_openreports_are_written_capped_and_pruned(cluster: ControlPlane, k: Kubectl, tmp_path: Path) -> None:
    state = tmp_path / "status.json"
    args = ["--status-file", str(state), "--write-qps", "200", "--lease-retry", "0.5"]
    with running_auditor(cluster, k, tmp_path, *args) as (_, log):
        want = SERVICES + 2  # the Services, the ServiceEntry, the stale Namespace
        got = wait_until(
            lambda: len(r := open_reports(k)) == want and r, 90, f"{want} Reports\n{log.read_text()[-3000:]}"
        )
        wait_until(
            lambda: status(state).get("reports_api") == "openreports.io/v1alpha1", 20, "the status to name the group"
        )
        se = got[("ServiceEntry", NS, "many")]
        assert (se["apiVersion"], se["kind"], se["source"]) == ("openreports.io/v1alpha1", "Report", "waypoint-webhook")
        assert se["summary"]["fail"] == ENDPOINTS, "the summary counts every finding"
        assert len(se["results"]) == reports.MAX_RESULTS == se["configuration"]["limits"]["maxResults"]
        cut = se["results"][-1]
        assert cut["rule"] == "ResultsTruncated" and f"{ENDPOINTS - reports.MAX_RESULTS + 1} more" in cut["message"]
        sizes = {key: len(json.dumps(r)) for key, r in got.items()}
        assert max(sizes.values()) < LIMIT, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        assert got[("Namespace", "", "stale")]["kind"] == "ClusterReport"
        assert not policy_reports_served(k), "no wgpolicyk8s.io CRDs were installed"
        k("delete", "service", "s0", "-n", NS)
        wait_until(lambda: ("Service", NS, "s0") not in open_reports(k), 30, "the deleted Service's Report to go")
        k("label", "namespace", "stale", f"{UW}-")
        wait_until(
            lambda: ("Namespace", "", "stale") not in open_reports(k), 30, "the fixed Namespace's ClusterReport to go"
        )


def policy_reports_served(k: Kubectl) -> bool:
    return "policyreports" in k("api-resources", "--api-group=wgpolicyk8s.io", check=False).stdout


def test_with_both_groups_the_flag_chooses_and_reports_move(cluster: ControlPlane, k: Kubectl, tmp_path: Path) -> None:
    install_report_crds(k)
    wanted = {key for key in open_reports(k)} or {("ServiceEntry", NS, "many")}
    args = ["--write-qps", "200", "--lease-retry", "0.5"]
    (tmp_path / "auto").mkdir()
    with running_auditor(cluster, k, tmp_path / "auto", *args) as (_, log):
        wait_until(
            lambda: wanted <= set(policy_reports(k)) and not open_reports(k),
            90,
            f"auto: PolicyReports only\n{log.read_text()[-3000:]}",
        )
    (tmp_path / "open").mkdir()
    with running_auditor(cluster, k, tmp_path / "open", *args, "--report-api", "openreports.io") as (_, log):
        wait_until(
            lambda: wanted <= set(open_reports(k)) and not policy_reports(k),
            90,
            f"Reports only\n{log.read_text()[-3000:]}",
        )
        se = open_reports(k)[("ServiceEntry", NS, "many")]
        assert se["summary"]["fail"] == ENDPOINTS and len(se["results"]) == reports.MAX_RESULTS
