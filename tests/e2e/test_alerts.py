"""The alerts of manifests/monitoring/alerts.yaml with the real promtool (issue 21 item 1): `check
rules`, and `test rules` with a case that fires and one that does not for every alert, written on
the series of a real scrape: the webhook's /metrics (probe port, with the continuous audit and
reviews behind it) and kube-apiserver's own, after it failed to call the webhook's entries."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane, free_port
from testkit.harness import Kubectl, apply_identity, probe_denial, running_cluster, wait_until, webhook_configs
from testkit.promtool import Scrape, promtool_bin
from testkit.webhook_process import ROOT, start_webhook

pytestmark = pytest.mark.e2e

ALERTS = ROOT / "manifests" / "monitoring" / "alerts.yaml"
TARGET = {"namespace": "waypoint-webhook", "pod": "waypoint-webhook-0", "job": "waypoint-webhook"}
POD = {"namespace": "waypoint-webhook", "pod": "waypoint-webhook-0"}
Series = list[tuple[str, str]]  # (series, promtool values)


def _bad_service(k: Kubectl) -> None:
    k("create", "namespace", "tenant")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "typo", "namespace": "tenant", "labels": {"istio.io/use-waypoint": "None"}},
        "spec": {"ports": [{"port": 80}]},
    }
    k.apply(svc)  # stored before any webhook: the audit finds it (a deny finding)


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    work = tmp_path_factory.mktemp("alerts")
    with running_cluster(work / "cp") as cp:
        yield _scrape(cp, Kubectl(cp.kubeconfig), work)


GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "g", "namespace": "tenant"},
    "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
}


def _scrape(cp: ControlPlane, k: Kubectl, work: Path) -> Scrape:
    apply_identity(k)
    _bad_service(k)
    k.apply(GATEWAY)
    wh = start_webhook(cp, k, work / "w", ["--audit"])
    try:
        wait_until(lambda: 'severity="deny"' in wh.metrics() and "waypoint_webhook_audit_leader 1.0" in wh.metrics(),
                   90, "the audit's deny finding, from the Lease holder", 0.5)  # fmt: skip
        k.apply(webhook_configs(k, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
        probe_denial(k)  # reviews: a denial, and the findings behind it
        k("label", "namespace", "tenant", "istio.io/use-waypoint=wp", "--dry-run=server")
        # /metrics is rendered at most once a second (--metrics-cache): wait for the reviews in it.
        wait_until(
            lambda: "waypoint_webhook_admission_requests_total{" in wh.metrics(), 30, "the reviews' metrics", 0.5
        )
        out = Scrape()
        out.add(wh.metrics(), TARGET)
    finally:
        wh.stop(15)
    # The API server failing to call the entries: one that fails closed, one that fails open.
    k.apply(webhook_configs(k, free_port(), wh.ca.read_bytes()))
    label = ["label", "namespace", "tenant", "istio.io/use-waypoint=other", "--dry-run=server"]
    wait_until(lambda: "failed calling webhook" in k(*label, check=False).stderr, 60, "a failed call", 0.5)
    delete = ["delete", "gateway", "g", "-n", "tenant", "--dry-run=server"]
    wait_until(
        lambda: (
            k(*delete, check=False).returncode == 0 and "apiserver_admission_webhook_fail_open_count{" in _apiserver(k)
        ),
        60,
        "a call that failed open",
        0.5,
    )
    out.add(_apiserver(k), {"job": "apiserver", "instance": "127.0.0.1:6443"})
    return out


def _apiserver(k: Kubectl) -> str:
    return k("get", "--raw", "/metrics").stdout


@dataclass(frozen=True)
class Case:
    alert: str
    fire: Callable[[Scrape], Series]
    quiet: Callable[[Scrape], Series]
    at: str  # eval_time
    labels: Callable[[Scrape], dict[str, str]]


def _buckets(s: Scrape, slow: bool) -> Series:
    """Every bucket of the latency histogram, with all reviews at 5 s (slow) or at 1 ms."""
    name = "waypoint_webhook_admission_duration_seconds_bucket"
    out = []
    for labels in s.samples[name]:
        le = labels["le"]
        covered = le == "+Inf" or float(le) >= (5.0 if slow else 0.001)
        out.append((s.series(name, le=le, webhook=labels["webhook"]), "0+10x30" if covered else "0x30"))
    return out


def _one(alert: str, metric: str, fire: str, quiet: str, at: str, **labels: str) -> Case:
    """An alert on one per-pod series (``labels`` overridden): ``fire`` and ``quiet`` are its values."""
    return Case(
        alert,
        lambda s: [(s.series(metric, **labels), fire)],
        lambda s: [(s.series(metric, **labels), quiet)],
        at,
        lambda s: {**POD, "severity": "warning"},
    )


def _ops(s: Scrape) -> dict[str, str]:
    return {"name": s.label("apiserver_admission_webhook_rejection_count", "name"), "severity": "critical"}


CASES = [
    Case(
        "WaypointWebhookUnreachable",
        lambda s: [
            (s.series("apiserver_admission_webhook_rejection_count", error_type="calling_webhook_error"), "0+10x20")
        ],
        lambda s: [
            (s.series("apiserver_admission_webhook_rejection_count", error_type="calling_webhook_error"), "5x20")
        ],
        "15m",
        _ops,
    ),
    Case(
        "WaypointWebhookErrors",
        lambda s: [
            (s.series("waypoint_webhook_admission_requests_total", result="error"), "0+10x30"),
            (s.series("waypoint_webhook_admission_requests_total", result="allowed"), "0+100x30"),
        ],
        lambda s: [
            (s.series("waypoint_webhook_admission_requests_total", result="error"), "3x30"),
            (s.series("waypoint_webhook_admission_requests_total", result="allowed"), "0+100x30"),
        ],
        "20m",
        lambda s: {**POD, "severity": "warning"},
    ),
    Case(
        "WaypointWebhookSlow",
        lambda s: _buckets(s, True),
        lambda s: _buckets(s, False),
        "20m",
        lambda s: {**POD, "severity": "warning"},
    ),
    _one("WaypointWebhookViewNotSynced", "waypoint_webhook_state_synced", "0x20", "1x20", "10m"),
    _one(
        "WaypointWebhookCertificateExpiring",
        "waypoint_webhook_certificate_expiry_timestamp_seconds",
        f"{10 * 86400}x20",
        "0x20",  # the value of a worker that has not loaded its certificate yet: no alert
        "10m",
    ),
    _one("WaypointWebhookCertificateRejected", "waypoint_webhook_certificate_rejected", "1x20", "0x20", "10m"),
    _one("WaypointWebhookAuditDown", "waypoint_webhook_audit_up", "0x30", "1x30", "20m"),
    Case(
        "WaypointWebhookAuditStale",
        lambda s: [
            (s.series("waypoint_webhook_audit_last_full_pass_timestamp_seconds"), "0x60"),
            (s.series("waypoint_webhook_audit_leader"), "1x60"),
        ],
        lambda s: [
            (s.series("waypoint_webhook_audit_last_full_pass_timestamp_seconds"), "0+60x60"),
            (s.series("waypoint_webhook_audit_leader"), "1x60"),
        ],
        "45m",
        lambda s: {**POD, "severity": "warning"},
    ),
    _one(
        "WaypointWebhookReportWritesFailing",
        "waypoint_webhook_audit_report_writes_total",
        "0+1x60",
        "2x60",
        "45m",
        operation="error",
    ),
    Case(
        "WaypointWebhookDenyFindings",
        lambda s: [(s.series("waypoint_webhook_audit_findings", severity="deny"), "1x120")],
        lambda s: [(s.series("waypoint_webhook_audit_findings", severity="deny"), "0x120")],
        "90m",
        lambda s: {
            "namespace": s.label("waypoint_webhook_audit_findings", "namespace"),
            "code": s.label("waypoint_webhook_audit_findings", "code"),
            "severity": "info",
        },
    ),
]


def _test(case: Case, series: Series, fires: bool, s: Scrape) -> dict[str, Any]:
    expected = [{"exp_labels": case.labels(s)}] if fires else []
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series],
        "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}],
    }


def test_every_alert_has_a_case() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [c.alert for c in CASES]


def test_promtool_checks_the_rules() -> None:
    p = subprocess.run([str(promtool_bin()), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert p.returncode == 0 and f"SUCCESS: {len(CASES)} rules found" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.alert for c in CASES])
def test_the_alert_fires_and_stays_quiet_on_real_series(case: Case, scrape: Scrape, tmp_path: Path) -> None:
    tests = [_test(case, case.fire(scrape), True, scrape), _test(case, case.quiet(scrape), False, scrape)]
    # promtool compares annotations too; their templates are checked by `check rules`, the
    # expressions, labels and `for` here.
    rules = yaml.safe_load(ALERTS.read_text())
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["alerts.yaml"], "tests": tests}))
    p = subprocess.run(
        [str(promtool_bin()), "test", "rules", "test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert p.returncode == 0, p.stdout + p.stderr + (tmp_path / "test.yaml").read_text()


DASHBOARD = ROOT / "manifests" / "monitoring" / "dashboard.json"


def _queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dash["panels"] for t in panel["targets"]]


def test_every_dashboard_query_names_metrics_of_the_real_scrape(scrape: Scrape) -> None:
    """Issue 21 item 2: a query on a metric nobody exports draws an empty panel, silently."""
    named = {m for q in _queries() for m in re.findall(r"\b(?:waypoint_webhook|apiserver)_[a-z_]+\b", q)}
    assert len(named) >= 10
    missing = sorted(m for m in named if m not in scrape.samples)
    assert not missing, f"the dashboard queries metrics the scrape does not have: {missing}"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), as Grafana would send it."""
    rules = [{"record": f"dashboard:query:{i}", "expr": q} for i, q in enumerate(_queries())]
    (tmp_path / "q.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    p = subprocess.run(
        [str(promtool_bin()), "check", "rules", str(tmp_path / "q.yaml")], capture_output=True, text=True
    )
    assert p.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in p.stdout, p.stdout + p.stderr
