"""Prometheus metrics, correct across gunicorn workers.

With several worker processes each one counts its own requests, so the server runs
prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by ``serve``) and
``/metrics`` aggregates every worker's files. Without that variable (tests, ``check``) metrics
live in a private registry. Nothing registers with the library's global registry.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
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

from webhook.findings import CODES
from webhook.kinds import KIND_NAMES

# Label values come from fixed sets: anything a client can make up is counted as "other", so a
# stream of invented kinds cannot grow the series (and the multiprocess files) without bound.
KINDS = KIND_NAMES
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
CLOSE_REASONS = frozenset(
    {"handshake_timeout", "header_timeout", "body_timeout", "response_timeout", "handshake_failed", "error"}
)
OTHER = "other"
AUDIT_CODES = frozenset(CODES) | {"MalformedObject"}

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AuditCollector:
    """The continuous audit's results, read from the status file its process replaces after every
    pass (:mod:`webhook.auditor`). A file older than ``stale_after`` seconds (the auditor is gone
    or stuck) shows ``waypoint_webhook_audit_up 0`` and no findings: stale findings would lie."""

    def __init__(self, path: str, stale_after: float = 60.0) -> None:
        self.path, self.stale_after = path, stale_after

    def _status(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as f:
                status = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(status, dict) or time.time() - float(status.get("updated") or 0) > self.stale_after:
            return None
        return status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        up = GaugeMetricFamily(
            "waypoint_webhook_audit_up", "1 while the continuous audit runs and has synced its view of the cluster."
        )
        up.add_metric([], 1 if status and status.get("synced") else 0)
        yield up
        if status is None:
            return
        findings = GaugeMetricFamily(
            "waypoint_webhook_audit_findings",
            "Findings of stored objects, as the continuous audit last judged them.",
            labels=["code", "severity", "kind", "namespace"],
        )
        for row in status.get("findings") or []:
            if not (isinstance(row, list) and len(row) == 5 and isinstance(row[4], (int, float))):
                continue  # the auditor writes only well-formed rows; a torn one is skipped, not a 500
            code, severity, kind, namespace, n = row
            findings.add_metric(
                [code if code in AUDIT_CODES else OTHER, severity, kind if kind in KINDS else OTHER, str(namespace)], n
            )
        yield findings
        for name, key, text in (
            (
                "waypoint_webhook_audit_last_full_pass_timestamp_seconds",
                "last_full_pass",
                "When the last full audit pass ended, as a Unix time.",
            ),
            (
                "waypoint_webhook_audit_full_pass_duration_seconds",
                "full_pass_seconds",
                "How long the last full audit pass took.",
            ),
            (
                "waypoint_webhook_audit_incremental_pass_duration_seconds",
                "incremental_seconds",
                "How long the last incremental audit pass (after watch events) took.",
            ),
            ("waypoint_webhook_audit_objects", "objects", "Objects the continuous audit judges."),
            ("waypoint_webhook_audit_leader", "leader", "1 when this replica holds the Lease and writes reports."),
            (
                "waypoint_webhook_audit_reports_available",
                "reports_available",
                "1 when the PolicyReport CRD is installed (only the leader knows).",
            ),
        ):
            g = GaugeMetricFamily(name, text)
            value = status.get(key)
            g.add_metric([], float(value) if isinstance(value, (int, float)) else 0.0)
            yield g
        writes = CounterMetricFamily(
            "waypoint_webhook_audit_report_writes",
            "Report writes by the leader since its audit started, by operation.",
            labels=["operation"],
        )
        for op, n in sorted((status.get("writes") or {}).items()):
            if isinstance(n, (int, float)):
                writes.add_metric([str(op)], n)
        yield writes


class Metrics:
    def __init__(self, audit_status: str | None = None) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        self.audit = AuditCollector(audit_status) if audit_status else None
        r = self.registry
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
        self.state_synced = Gauge(
            "waypoint_webhook_state_synced",
            "1 when this process's cluster view is synced (min over workers).",
            registry=r,
            multiprocess_mode="min",
        )
        self.cert_expiry = Gauge(
            "waypoint_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix time.",
            registry=r,
            multiprocess_mode="min",
        )
        self.state_events = Counter(
            "waypoint_webhook_state_events_total",
            "Cluster view updates applied, by resource and type.",
            ["resource", "type"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self.connections_closed = Counter(
            "waypoint_webhook_connections_closed_total",
            "Connections the server closed before a whole request was answered, by reason "
            "(a phase's deadline passed, or the TLS handshake failed).",
            ["reason"],
            registry=r,
        )
        self.cert_rejected = Gauge(
            "waypoint_webhook_certificate_rejected",
            "1 while the certificate files on disk were refused (expired, not yet valid, or a key that does "
            "not match) and the previous pair is still serving.",
            registry=r,
            multiprocess_mode="max",
        )
        self.state_relists = Counter(
            "waypoint_webhook_state_relists_total",
            "Full relists of a watched resource, by resource and reason.",
            ["resource", "reason"],
            registry=r,
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

    def finding(self, code: str, severity: str) -> None:
        self.findings.labels(code if code in CODES else OTHER, severity).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason if reason in CLOSE_REASONS else OTHER).inc()

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        out = generate_latest(registry)
        if self.audit is not None:
            extra = CollectorRegistry(auto_describe=False)
            extra.register(self.audit)
            out += generate_latest(extra)
        return out, CONTENT_TYPE_LATEST
