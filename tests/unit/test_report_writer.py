"""The report writer (webhook.audit.writer) as a reconcile loop, against an in-memory PolicyReport
API: desired reports against existing ones, per-key retries with backoff so one refused report
never holds back the others, and a new leader that rewrites nothing already right."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from testkit.builders import consumer
from testkit.fakeapi import Call, Raw
from testkit.harness import wait_until
from webhook.audit import reports, writer
from webhook.audit.tracker import Tracker
from webhook.audit.writer import ReportWriter, WorkQueue
from webhook.core.engine import Settings
from webhook.core.index import Index

UW = "istio.io/use-waypoint"


@dataclass
class FakeReports:
    """PolicyReports and ClusterPolicyReports with resourceVersions; ``refuse`` names reports the
    server answers 500 for (as etcd's size limit does), until removed."""

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> report
    refuse: set[str] = field(default_factory=set)
    served: bool = True  # the CRDs are installed
    groups: set[str] = field(default_factory=lambda: {"wgpolicyk8s.io"})  # of which API groups
    forbidden: set[str] = field(default_factory=set)  # groups RBAC does not grant (403)
    version: int = 0
    writes: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def param_serialize(self, method: str, path: str, body: Any = None, **_: Any) -> tuple[Any, ...]:
        return method, path, None, body, None

    def call_api(self, method: str, path: str, headers: Any, body: Any, post: Any, **_: Any) -> Call:
        with self.lock:
            status, payload = self._handle(method, path.partition("?")[0], copy.deepcopy(body))
            return Call(Raw(status, json.dumps(payload).encode()))

    def _handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        group = path.split("/")[2]
        if group in self.forbidden:
            return 403, {"message": f"forbidden: cannot list {group}"}
        if not self.served or group not in self.groups:
            return 404, {"message": "the server could not find the requested resource"}
        for api in reports.APIS:
            if method == "GET" and path in (api.every(True), api.every(False)):
                namespaced, prefix = path == api.every(True), f"/apis/{api.api_version}/"
                items = [
                    r for p, r in self.reports.items() if p.startswith(prefix) and ("/namespaces/" in p) == namespaced
                ]
                return 200, {"metadata": {}, "items": items}
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.reports:
                return 409, {}
        name = path.rsplit("/", 1)[1]
        if method in ("POST", "PUT") and name in self.refuse:
            return 500, {"message": "etcdserver: request is too large"}
        if method == "GET":
            return (200, self.reports[path]) if path in self.reports else (404, {})
        if method == "DELETE":
            self.writes.append((method, name))
            return (200, self.reports.pop(path)) if path in self.reports else (404, {})
        if method == "PUT" and self.reports.get(path, {}).get("metadata", {}).get("resourceVersion") != body[
            "metadata"
        ].get("resourceVersion"):
            return 409, {}
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.reports[path] = body
        self.writes.append((method, name))
        return 200, body


def tracker_with(*names: str) -> Tracker:
    """One broken Service per name (InvalidUseWaypoint), judged."""
    index = Index()
    tracker = Tracker(index, Settings())
    for n in names:
        obj = consumer("Service", n, "shop", labels={UW: "None"})
        obj["metadata"]["uid"] = f"uid-{n}"
        index.apply(obj)
        tracker.observe(obj, False)
    tracker.mark_all()
    tracker.recompute()
    return tracker


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "RETRY_BASE", 0.05)


@pytest.fixture
def running() -> Iterator[list[ReportWriter]]:
    started: list[ReportWriter] = []
    yield started
    for w in started:
        w.stop()


def start(
    api: FakeReports,
    tracker: Tracker,
    running: list[ReportWriter],
    ready: bool = True,
    apis: tuple[reports.ReportApi, ...] = reports.APIS,
) -> ReportWriter:
    w = ReportWriter(api, tracker, qps=0, retry=0.2, apis=apis)
    if ready:
        w.ready.set()  # what the auditor does after its first full pass
    w.start()
    running.append(w)
    w.start_leading()
    return w


def test_each_object_with_findings_gets_one_report(running: list[ReportWriter]) -> None:
    api, tracker = FakeReports(), tracker_with("a", "b", "c")
    start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 3, 5, "three reports")
    assert sorted(r["scope"]["name"] for r in api.reports.values()) == ["a", "b", "c"]
    assert all(r["summary"]["fail"] == 1 for r in api.reports.values())


def test_one_refused_report_never_holds_back_the_others(running: list[ReportWriter], fast_retries: None) -> None:
    api, tracker = FakeReports(refuse={"waypoint-webhook-uid-a"}), tracker_with("a", "b", "c")
    w = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "the two reports that are not refused")
    wait_until(lambda: w.counts.error >= 3, 5, "the refused one retried, with backoff")
    assert "waypoint-webhook-uid-a" not in {r["metadata"]["name"] for r in api.reports.values()}
    with api.lock:
        api.refuse.clear()
    wait_until(lambda: len(api.reports) == 3, 5, "the refused report once the server takes it")


def test_a_new_leader_rewrites_nothing_that_is_right(running: list[ReportWriter]) -> None:
    api, tracker = FakeReports(), tracker_with("a", "b")
    first = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "the first leader's reports")
    first.stop()
    writes = len(api.writes)
    second = start(api, tracker, running)
    wait_until(lambda: second.available is True, 5, "the second leader's listing")
    second.enqueue(tracker.with_findings())
    wait_until(lambda: second._queue.next_due() is None, 5, "the queue drained")
    assert len(api.writes) == writes, api.writes[writes:]


def test_a_leader_that_has_not_audited_yet_touches_no_report(running: list[ReportWriter]) -> None:
    """A standby that takes the Lease starts watching only then: until its first full pass the
    tracker is empty, and comparing with it would delete every report in the cluster."""
    api, tracker = FakeReports(), tracker_with("a", "b")
    start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "the first leader's reports")
    writes = len(api.writes)
    second = start(api, Tracker(Index(), Settings()), running, ready=False)  # leading, nothing audited yet
    threading.Event().wait(1.5)
    assert len(api.writes) == writes and len(api.reports) == 2, api.writes[writes:]
    second.tracker = tracker
    second.ready.set()
    second.resync()
    wait_until(lambda: second.available is True and second._queue.next_due() is None, 5, "the new leader's pass")
    assert len(api.writes) == writes and len(api.reports) == 2, api.writes[writes:]


def test_a_fixed_object_loses_its_report(running: list[ReportWriter]) -> None:
    api, tracker = FakeReports(), tracker_with("a", "b")
    w = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "two reports")
    fixed = consumer("Service", "a", "shop")  # the label removed: nothing left to report
    fixed["metadata"]["uid"] = "uid-a"
    tracker.index.apply(fixed)
    tracker.observe(fixed, False)
    w.enqueue(tracker.recompute())
    wait_until(lambda: len(api.reports) == 1, 5, "the fixed object's report deleted")


def test_the_work_queue_keeps_the_earliest_time_and_pops_in_order() -> None:
    q = WorkQueue()
    q.add(("Service", "ns", "b"), 5.0)
    q.add(("Service", "ns", "a"), 5.0)
    q.add(("Service", "ns", "b"), 1.0)
    q.add(("Service", "ns", "b"), 9.0)  # later than what is queued: ignored
    assert q.next_due() == 1.0
    assert q.pop_due(1.0) == [("Service", "ns", "b")]
    assert q.pop_due(4.0) == []
    assert q.pop_due(5.0) == [("Service", "ns", "a")]
    assert q.next_due() is None


def test_backoff_doubles_per_failure_and_is_capped() -> None:
    assert [writer.retry_after(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert writer.retry_after(50) == writer.RETRY_CAP


def test_a_report_deleted_by_hand_comes_back_at_the_next_full_pass(running: list[ReportWriter]) -> None:
    api, tracker = FakeReports(), tracker_with("a", "b")
    w = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "two reports")
    with api.lock:
        del api.reports[next(p for p in api.reports if p.endswith("uid-a"))]
    w.resync()  # what every full pass does
    wait_until(lambda: len(api.reports) == 2, 5, "the deleted report written again")


def test_reports_lost_with_their_crd_are_refilled(running: list[ReportWriter]) -> None:
    """A Kyverno reinstall deletes and recreates the report CRDs: the next full pass lists, finds
    the CRD missing, looks again, and refills every report once it is back."""
    api, tracker = FakeReports(), tracker_with("a", "b")
    w = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "two reports")
    with api.lock:
        api.reports.clear()
        api.served = False
    w.resync()  # the next full pass
    wait_until(lambda: w.available is False, 5, "the CRD noticed missing")
    with api.lock:
        api.served = True
    wait_until(lambda: len(api.reports) == 2, 5, "every report refilled")


def test_thousands_of_findings_fit_one_report() -> None:
    from webhook.audit import reports
    from webhook.core.findings import Code, Finding, Judged, Severity

    findings = tuple(
        Judged(
            Finding(Code.AttachmentDenied, f"endpoint {i}: " + "x" * 300, f"spec.endpoints[{i}].labels"), Severity.DENY
        )
        for i in range(4096)
    )
    report = reports.render("networking.istio.io/v1", "ServiceEntry", "shop", "se", "uid", findings, {}, 1)
    assert len(json.dumps(report)) < 256 * 1024, "far below etcd's request limit"
    assert report["summary"]["fail"] == 4096 and len(report["results"]) == reports.MAX_RESULTS
    assert report["results"][-1]["rule"] == "ResultsTruncated" and "3897 more" in report["results"][-1]["message"]
    again = reports.render(
        "networking.istio.io/v1", "ServiceEntry", "shop", "se", "uid", findings, reports.since_of(report), 99
    )
    assert reports.content(again) == reports.content(report), "an unchanged capped report is never rewritten"


def test_an_auditor_that_writes_no_reports_stops_cleanly() -> None:
    """``auditor --no-reports`` on SIGTERM: neither the writer nor the Lease was started, and
    stopping them must not fail (it exited 1 with "cannot join thread before it is started")."""
    from webhook.audit.auditor import Auditor, AuditorOptions

    class View:
        def __init__(self) -> None:
            self.index = Index()
            self.observer: Callable[[Mapping[str, Any], bool], None] | None = None

        def start(self) -> None: ...
        def stop(self) -> None: ...
        def synced(self) -> bool:
            return True

        def wait_synced(self, timeout: float) -> bool:
            return True

    auditor = Auditor(AuditorOptions(reports=False), FakeReports(), View())
    auditor.shutdown()  # raised RuntimeError before
    assert not auditor.writer.thread.is_alive() and not auditor.elector.thread.is_alive()


def in_group(api: FakeReports, group: str) -> dict[str, dict[str, Any]]:
    with api.lock:
        return {p: r for p, r in api.reports.items() if p.startswith(f"/apis/{group}/")}


def test_openreports_alone_are_written_as_reports(running: list[ReportWriter]) -> None:
    """Only the openreports.io CRDs installed: auto writes Reports, the same content."""
    api, tracker = FakeReports(groups={"openreports.io"}), tracker_with("a", "b")
    w = start(api, tracker, running)
    wait_until(lambda: len(api.reports) == 2, 5, "two Reports")
    assert all(p.startswith("/apis/openreports.io/v1alpha1/namespaces/shop/reports/") for p in api.reports)
    assert {r["kind"] for r in api.reports.values()} == {"Report"} and w.using is reports.OPENREPORTS


def test_both_groups_auto_prefers_wgpolicy_and_a_named_group_moves_every_report(running: list[ReportWriter]) -> None:
    """Both groups served: auto keeps writing PolicyReports (what an existing install reads);
    --report-api openreports.io writes Reports and deletes ours in wgpolicyk8s.io, and back."""
    api, tracker = FakeReports(groups={"wgpolicyk8s.io", "openreports.io"}), tracker_with("a", "b")
    first = start(api, tracker, running)
    wait_until(lambda: len(in_group(api, "wgpolicyk8s.io")) == 2, 5, "two PolicyReports")
    assert not in_group(api, "openreports.io")
    first.stop()
    start(api, tracker, running, apis=reports.CHOICES["openreports.io"])
    wait_until(lambda: len(in_group(api, "openreports.io")) == 2, 5, "two Reports")
    wait_until(lambda: not in_group(api, "wgpolicyk8s.io"), 5, "the PolicyReports deleted")
    running[-1].stop()
    start(api, tracker, running, apis=reports.CHOICES["wgpolicyk8s.io"])
    wait_until(
        lambda: len(in_group(api, "wgpolicyk8s.io")) == 2 and not in_group(api, "openreports.io"), 5, "moved back"
    )


def test_a_named_group_not_installed_writes_nothing_elsewhere(running: list[ReportWriter]) -> None:
    api, tracker = FakeReports(groups={"wgpolicyk8s.io"}), tracker_with("a")
    w = start(api, tracker, running, apis=reports.CHOICES["openreports.io"])
    wait_until(lambda: w.available is False, 5, "the openreports.io CRDs noticed missing")
    assert not api.reports and not api.writes
    with api.lock:
        api.groups.add("openreports.io")
    wait_until(lambda: len(in_group(api, "openreports.io")) == 1, 5, "written once the CRDs are there")


def test_a_group_not_granted_never_blocks_writing_the_other(running: list[ReportWriter]) -> None:
    """An older ClusterRole granting only wgpolicyk8s.io, with the OpenReports CRDs installed: the
    clean-up there is refused (403) and reports are still written."""
    api = FakeReports(groups={"wgpolicyk8s.io", "openreports.io"}, forbidden={"openreports.io"})
    tracker = tracker_with("a", "b")
    w = start(api, tracker, running)
    wait_until(lambda: len(in_group(api, "wgpolicyk8s.io")) == 2, 5, "two PolicyReports")
    assert w.available is True and w.counts.error == 0
