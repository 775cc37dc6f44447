"""Reports that converge, on a real kube-apiserver (issue 18, item 5): each repro of the issue as
the auditor meets it. A report deleted by hand comes back; reports lost with their CRDs (a Kyverno
reinstall) are refilled; a namespace stuck in Terminating and a report too large for etcd block
no other object's report.

A control plane of its own, with no controller-manager: a deleted namespace stays Terminating,
which is exactly the stuck namespace of the issue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.controlplane import ControlPlane
from testkit.harness import (
    REPORT_CRDS,
    Kubectl,
    apply_identity,
    install_crds,
    install_report_crds,
    policy_reports,
    running_auditor,
    running_cluster,
    wait_until,
)
from webhook.audit.reports import MAX_RESULTS

pytestmark = pytest.mark.e2e
UW = "istio.io/use-waypoint"
ENDPOINTS = 4096


def _setup(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    apply_identity(kubectl)
    install_report_crds(kubectl)


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _typo(name: str, ns: str) -> dict[str, Any]:
    """A Service admission would deny (L1): its report has one failing result."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": {UW: "None"}},
            "spec": {"ports": [{"port": 80}]}}  # fmt: skip


def _huge_service_entry(ns: str) -> dict[str, Any]:
    """R4 + L1: 4,096 endpoints, each with its own malformed use-waypoint, so 4,096 findings; uncapped,
    its report would be about 2.8 MB, over etcd's limit."""
    endpoints = [{"address": f"10.9.{i // 256}.{i % 256}", "labels": {UW: f"Bad_{i}"}} for i in range(ENDPOINTS)]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "huge", "namespace": ns},
        "spec": {"hosts": ["huge.example"], "resolution": "STATIC", "ports": [{"number": 80, "name": "http"}],
                 "endpoints": endpoints},
    }  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("converge-cp"), setup=_setup) as cp:
        yield cp


@pytest.fixture(scope="module")
def k(cluster: ControlPlane) -> Kubectl:
    k = Kubectl(cluster.kubeconfig)
    # "aa-dying" sorts first: before the fix its refused report aborted every report after it.
    k.apply([_namespace("aa-dying"), _namespace("big"), _namespace("zz-shop")])
    k.apply([_typo("doomed", "aa-dying"), _typo("typo", "zz-shop")])
    k("create", "-f", "-", input=json.dumps(_huge_service_entry("big")))  # too large for a last-applied annotation
    k("delete", "namespace", "aa-dying", "--wait=false")
    phase = k("get", "namespace", "aa-dying", "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Terminating", "no namespace controller runs here: the namespace stays Terminating"
    return k


@pytest.fixture(scope="module")
def auditor(cluster: ControlPlane, k: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``waypoint-webhook auditor`` as the Deployment's service account, full passes every 3 s."""
    args = ["--full-pass-interval", "3", "--report-retry", "1", "--lease-retry", "0.5", "--write-qps", "200"]
    with running_auditor(cluster, k, tmp_path_factory.mktemp("converge-auditor"), *args) as (_, log):
        yield log


def test_a_stuck_namespace_and_an_oversized_report_block_nothing(k: Kubectl, auditor: Path) -> None:
    reports = wait_until(
        lambda: (
            (r := policy_reports(k))
            and {("Service", "zz-shop", "typo"), ("ServiceEntry", "big", "huge")} <= set(r)
            and r
        ),
        90,
        f"the reports after the stuck namespace and the huge one\n{auditor}",
    )
    assert ("Service", "aa-dying", "doomed") not in reports, "a Terminating namespace takes no report"
    huge = reports[("ServiceEntry", "big", "huge")]
    assert huge["summary"]["fail"] == ENDPOINTS, huge["summary"]
    assert huge["results"][-1]["rule"] == "ResultsTruncated" and len(huge["results"]) == MAX_RESULTS
    assert len(json.dumps(huge)) < 256 * 1024


def test_a_report_deleted_by_hand_comes_back(k: Kubectl, auditor: Path) -> None:
    key = ("Service", "zz-shop", "typo")
    first = wait_until(lambda: policy_reports(k).get(key), 90, f"the first report\n{auditor}")
    k("delete", "policyreport", first["metadata"]["name"], "-n", "zz-shop")
    again = wait_until(lambda: policy_reports(k).get(key), 20, f"the deleted report to come back\n{auditor}")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert [r["rule"] for r in again["results"]] == ["InvalidUseWaypoint"]


def test_reports_lost_with_their_crds_are_refilled(k: Kubectl, auditor: Path) -> None:
    """What a Kyverno reinstall does: the CRDs, and every report with them, go and come back."""
    want = {("Service", "zz-shop", "typo"), ("ServiceEntry", "big", "huge")}
    wait_until(lambda: want <= set(policy_reports(k)), 90, f"the first reports\n{auditor}")
    k("delete", *REPORT_CRDS, "--wait=true")
    assert k("get", "policyreports", "-A", check=False).returncode != 0, "the reports went with their CRDs"
    install_report_crds(k)
    wait_until(lambda: want <= set(policy_reports(k)), 30, f"the reports refilled after the reinstall\n{auditor}")
