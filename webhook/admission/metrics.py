"""Prometheus metrics, correct across gunicorn workers.

With several worker processes each one counts its own requests, so the server runs
prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by ``serve``) and
the probe process's ``/metrics`` aggregates every worker's files (:func:`render_exposition`),
off the admission path. Without that variable (tests, ``check``) metrics live in a private
registry. Nothing registers with the library's global registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as mp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from webhook.core.audit_status import AuditStatus
from webhook.core.findings import CODES
from webhook.core.kinds import KIND_NAMES

# Label values come from fixed sets: anything a client can make up is counted as "other", so a
# stream of invented kinds cannot grow the series (and the multiprocess files) without bound.
KINDS = KIND_NAMES
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
CLOSE_REASONS = frozenset(
    {
        "handshake_timeout",
        "header_timeout",
        "body_timeout",
        "response_timeout",
        "handshake_failed",
        "bad_framing",
        "error",
    }
)
OTHER = "other"
AUDIT_CODES = frozenset(CODES)

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_AUDIT_GAUGES: tuple[tuple[str, str, Callable[[AuditStatus], float]], ...] = (
    (
        "waypoint_webhook_audit_last_full_pass_timestamp_seconds",
        "When the last full audit pass ended, as a Unix time.",
        lambda s: s.last_full_pass,
    ),
    (
        "waypoint_webhook_audit_full_pass_duration_seconds",
        "How long the last full audit pass took.",
        lambda s: s.full_pass_seconds,
    ),
    (
        "waypoint_webhook_audit_incremental_pass_duration_seconds",
        "How long the last incremental audit pass (after watch events) took.",
        lambda s: s.incremental_seconds,
    ),
    ("waypoint_webhook_audit_objects", "Objects the continuous audit judges.", lambda s: s.objects),
    (
        "waypoint_webhook_audit_leader",
        "1 when this replica holds the Lease and writes reports.",
        lambda s: 1.0 if s.leader else 0.0,
    ),
    (
        "waypoint_webhook_audit_standby",
        "1 while this replica waits for the Lease and audits nothing (another replica audits the cluster).",
        lambda s: 1.0 if s.standby else 0.0,
    ),
    (
        "waypoint_webhook_audit_reports_available",
        "1 when the PolicyReport CRD is installed (only the leader knows).",
        lambda s: 1.0 if s.reports_available else 0.0,
    ),
)


class AuditCollector:
    """The continuous audit's results, read from the status file its process replaces after every
    pass (:mod:`webhook.audit.auditor`), as an :class:`~webhook.core.audit_status.AuditStatus`. A
    file older than ``stale_after`` seconds (the auditor is gone or stuck) shows
    ``waypoint_webhook_audit_up 0`` and no findings: stale findings would lie."""

    def __init__(self, path: str, stale_after: float = 60.0) -> None:
        self.path, self.stale_after = path, stale_after

    def _status(self) -> AuditStatus | None:
        try:
            with open(self.path, "rb") as f:
                status = AuditStatus.from_json(json.loads(f.read()))
        except (OSError, ValueError):
            return None
        if status is None or time.time() - status.updated > self.stale_after:
            return None
        return status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        up = GaugeMetricFamily(
            "waypoint_webhook_audit_up",
            "1 while the continuous audit runs: synced with the cluster, or a standby waiting for the Lease.",
        )
        up.add_metric([], 1 if status and (status.synced or status.standby) else 0)
        yield up
        if status is None:
            return
        yield self._findings(status)
        for name, text, value in _AUDIT_GAUGES:
            g = GaugeMetricFamily(name, text)
            g.add_metric([], float(value(status)))
            yield g
        writes = CounterMetricFamily(
            "waypoint_webhook_audit_report_writes",
            "Report writes by the leader since its audit started, by operation.",
            labels=["operation"],
        )
        for op, n in sorted(status.writes.items()):
            writes.add_metric([op], n)
        yield writes

    @staticmethod
    def _findings(status: AuditStatus) -> Metric:
        findings = GaugeMetricFamily(
            "waypoint_webhook_audit_findings",
            "Findings of stored objects, as the continuous audit last judged them.",
            labels=["code", "severity", "kind", "namespace"],
        )
        for f in status.findings:
            code = f.code if f.code in AUDIT_CODES else OTHER
            findings.add_metric([code, f.severity, f.kind if f.kind in KINDS else OTHER, f.namespace], f.count)
        return findings


class Metrics:
    """Every metric the server exports, in a registry of its own."""

    def __init__(self, audit_status: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.audit = AuditCollector(audit_status) if audit_status else None
        self._request_children: dict[tuple[str, str, str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._review_metrics(self.registry)
        self._state_metrics(self.registry)
        self._certificate_metrics(self.registry)

    def _review_metrics(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "waypoint_webhook_admission_requests_total",
            "Admission reviews answered, by webhook, kind, operation and result.",
            ["webhook", "kind", "operation", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "waypoint_webhook_admission_duration_seconds",
            "Time from request body read to response encoded, by webhook.",
            ["webhook"],
            buckets=BUCKETS,
            registry=r,
        )
        self.findings = Counter(
            "waypoint_webhook_findings_total",
            "Findings reported, by code and final severity.",
            ["code", "severity"],
            registry=r,
        )
        self.bad_requests = Counter(
            "waypoint_webhook_bad_requests_total",
            "Requests rejected before review, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.connections_closed = Counter(
            "waypoint_webhook_connections_closed_total",
            "Connections the server closed before a whole request was answered, by reason "
            "(a phase's deadline passed, or the TLS handshake failed).",
            ["reason"],
            registry=r,
        )

    def _state_metrics(self, r: CollectorRegistry) -> None:
        self.state_synced = Gauge(
            "waypoint_webhook_state_synced",
            "1 when this process's cluster view is synced (min over workers).",
            registry=r,
            multiprocess_mode="min",
        )
        self.state_events = Counter(
            "waypoint_webhook_state_events_total",
            "Cluster view updates applied, by resource and type.",
            ["resource", "type"],
            registry=r,
        )
        self.state_relists = Counter(
            "waypoint_webhook_state_relists_total",
            "Full relists of a watched resource, by resource and reason.",
            ["resource", "reason"],
            registry=r,
        )

    def _certificate_metrics(self, r: CollectorRegistry) -> None:
        self.cert_expiry = Gauge(
            "waypoint_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix time.",
            registry=r,
            multiprocess_mode="min",
        )
        self.cert_rejected = Gauge(
            "waypoint_webhook_certificate_rejected",
            "1 while the certificate files on disk were refused (expired, not yet valid, or a key that does "
            "not match) and the previous pair is still serving.",
            registry=r,
            multiprocess_mode="max",
        )

    def request_done(self, webhook: str, kind: str, operation: str, result: str, seconds: float) -> None:
        """Count and time one review. Label children are cached: ``labels()`` costs microseconds
        per call, a dict lookup does not."""
        key = (webhook, kind if kind in KINDS else OTHER, operation if operation in OPERATIONS else OTHER, result)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()
        hist = self._duration_children.get(webhook)
        if hist is None:
            hist = self._duration_children[webhook] = self.duration.labels(webhook)
        hist.observe(seconds)

    def relisted(self, resource: str, reason: str) -> None:
        """A full relist of a watched resource (the live view's WatchCounters)."""
        self.state_relists.labels(resource, reason).inc()

    def applied(self, resource: str, event_type: str) -> None:
        """One watch event applied to the view (the live view's WatchCounters)."""
        self.state_events.labels(resource, event_type).inc()

    def finding(self, code: str, severity: str) -> None:
        self.findings.labels(code if code in CODES else OTHER, severity).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason if reason in CLOSE_REASONS else OTHER).inc()

    def exposition(self) -> tuple[bytes, str]:
        """This process's own metrics (tests, in-process use); ``serve`` exports every worker's
        through the probe port (:func:`render_exposition`)."""
        out = generate_latest(self.registry)
        if self.audit is not None:
            out += _audit_exposition(self.audit)
        return out, CONTENT_TYPE


CONTENT_TYPE = CONTENT_TYPE_LATEST


def _audit_exposition(audit: AuditCollector) -> bytes:
    extra = CollectorRegistry(auto_describe=False)
    extra.register(audit)
    return generate_latest(extra)


def render_exposition(directory: str, audit_status: str | None) -> bytes:
    """Every worker's metrics, aggregated from their files in ``directory``, and the audit's.
    Called by the probe process (:mod:`webhook.admission.probes`), which registers no metric
    of its own: it must not add a zero to the workers' ``min`` gauges."""
    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    out = generate_latest(registry)
    return out + (_audit_exposition(AuditCollector(audit_status)) if audit_status else b"")
