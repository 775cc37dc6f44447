"""Prometheus metrics, correct across gunicorn workers.

With several worker processes each one counts its own requests, so the server runs
prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by ``serve``) and
``/metrics`` aggregates every worker's files. Without that variable (tests, ``check``) metrics
live in a private registry. Nothing registers with the library's global registry.
"""

from __future__ import annotations

import os
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

from webhook.engine import SUPPORTED
from webhook.findings import CODES

# Label values come from fixed sets: anything a client can make up is counted as "other", so a
# stream of invented kinds cannot grow the series (and the multiprocess files) without bound.
KINDS = frozenset(kind for _, kind in SUPPORTED)
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
CLOSE_REASONS = frozenset(
    {"handshake_timeout", "header_timeout", "body_timeout", "response_timeout", "handshake_failed", "error"}
)
OTHER = "other"

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
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
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
