"""Audit results as ``wgpolicyk8s.io/v1alpha2`` PolicyReports, the format Kyverno and Policy
Reporter users already read.

One report per object with findings, scoped to it, as Kyverno writes them today: a
``PolicyReport`` in the object's namespace, or a ``ClusterPolicyReport`` for a Namespace or a
GatewayClass. So ``kubectl get policyreports -A`` lists each broken object with its kind, name and
counts; a report never outgrows etcd's object size; and, owned by its object, it is garbage
collected with it. Each finding is one result: ``policy: waypoint-webhook``, ``rule:`` the code,
``result: fail`` for a denial and ``warn`` for a warning.

This module only renders; :mod:`webhook.audit.auditor` writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from webhook.core.findings import Judged, Severity

GROUP = "wgpolicyk8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
POLICY = "waypoint-webhook"
SOURCE = "waypoint-webhook"
CATEGORY = "Istio ambient waypoints"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "waypoint-webhook"
NAME_PREFIX = "waypoint-webhook-"
_RESULT = {Severity.DENY: "fail", Severity.WARN: "warn"}
_SEVERITY = {Severity.DENY: "high", Severity.WARN: "medium"}


def report_name(kind: str, namespace: str, name: str, uid: str) -> str:
    """Named after the object's uid, as Kyverno names its reports, with a prefix so that both can
    report on one object; without a uid, after a hash of its key."""
    if uid:
        return NAME_PREFIX + uid
    digest = hashlib.sha256(f"{kind}/{namespace}/{name}".encode()).hexdigest()[:32]
    return NAME_PREFIX + digest


def collection(namespace: str) -> str:
    """The API path of the reports of ``namespace`` ("" for ClusterPolicyReports)."""
    if namespace:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/policyreports"
    return f"/apis/{GROUP}/{VERSION}/clusterpolicyreports"


def _owned_by(api_version: str, kind: str, namespace: str, name: str, uid: str) -> tuple[dict[str, Any], ...]:
    """The report's scope and metadata: named after, scoped to and owned by its object."""
    scope = {"apiVersion": api_version, "kind": kind, "name": name}
    metadata: dict[str, Any] = {"name": report_name(kind, namespace, name, uid), "labels": {MANAGED_BY: MANAGER}}
    if namespace:
        scope["namespace"] = metadata["namespace"] = namespace
    if uid:
        scope["uid"] = uid
        metadata["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}]
    return scope, metadata


# A report holds at most this many results, the denials first: one object with thousands of
# findings (a ServiceEntry with 4,096 broken endpoints) would otherwise outgrow etcd's request
# limit and never be written. The summary still counts every finding.
MAX_RESULTS = 200
TRUNCATED = "ResultsTruncated"


def _truncated(left_out: int, now: int) -> dict[str, Any]:
    return {
        "policy": POLICY,
        "rule": TRUNCATED,
        "result": "skip",
        "severity": "info",
        "category": CATEGORY,
        "source": SOURCE,
        "scored": False,
        "message": f"{left_out} more finding(s) of this object are not listed: a report holds at most {MAX_RESULTS}",
        "properties": {"field": ""},
        "timestamp": {"seconds": now, "nanos": 0},
    }


def _entry(r: Judged, since: Mapping[tuple[str, str], int], now: int) -> dict[str, Any]:
    return {
        "policy": POLICY,
        "rule": str(r.code),
        "result": _RESULT.get(r.severity, "warn"),
        "severity": _SEVERITY.get(r.severity, "medium"),
        "category": CATEGORY,
        "source": SOURCE,
        "scored": True,
        "message": r.message,
        "properties": {"field": r.field},
        "timestamp": {"seconds": since.get((r.code, r.field), now), "nanos": 0},
    }


def render(
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    uid: str,
    results: tuple[Judged, ...],
    since: Mapping[tuple[str, str], int],
    now: int,
) -> dict[str, Any]:
    """The report for one object. ``since`` carries over when each (code, field) was first reported,
    so an unchanged finding keeps its timestamp and an unchanged report is never rewritten."""
    scope, metadata = _owned_by(api_version, kind, namespace, name, uid)
    ordered = sorted(results, key=lambda r: (r.severity is not Severity.DENY, r.code, r.field))
    shown = [_entry(r, since, now) for r in ordered[:MAX_RESULTS]]
    if len(ordered) > MAX_RESULTS:
        shown.append(_truncated(len(ordered) - MAX_RESULTS, since.get((TRUNCATED, ""), now)))
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicyReport" if namespace else "ClusterPolicyReport",
        "metadata": metadata,
        "scope": scope,
        "summary": {
            "pass": 0,
            "fail": sum(r.severity is Severity.DENY for r in results),
            "warn": sum(r.severity is Severity.WARN for r in results),
            "error": 0,
            "skip": int(len(ordered) > MAX_RESULTS),
        },
        "results": shown,
    }


def since_of(report: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """When each (code, field) of an existing report was first reported."""
    out: dict[tuple[str, str], int] = {}
    for r in report.get("results") or []:
        if not isinstance(r, dict):
            continue
        props, ts = r.get("properties"), r.get("timestamp")
        props = props if isinstance(props, dict) else {}
        seconds = ts.get("seconds") if isinstance(ts, dict) else None
        if isinstance(r.get("rule"), str) and isinstance(seconds, int):
            out[(r["rule"], str(props.get("field", "")))] = seconds
    return out


def content(report: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides whether a stored report must be rewritten: everything the audit sets, so a
    report edited by hand is put back, and nothing the API server adds."""
    meta = report.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (
        report.get("scope"),
        report.get("summary"),
        report.get("results"),
        labels.get(MANAGED_BY),
        meta.get("ownerReferences"),
    )
