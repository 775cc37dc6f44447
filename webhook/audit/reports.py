"""Audit results as reports in the two API groups Kyverno and Policy Reporter users read:
``wgpolicyk8s.io/v1alpha2`` PolicyReports, and ``openreports.io/v1alpha1`` Reports, which Kyverno
and Policy Reporter (>= 3.2) are moving to as the wg-policy CRDs are retired. Both carry the same
content; OpenReports adds the report's ``source`` and ``configuration.limits.maxResults``.

One report per object with findings, scoped to it, as Kyverno writes them today: a
``PolicyReport`` (``Report``) in the object's namespace, or a ``ClusterPolicyReport``
(``ClusterReport``) for a Namespace or a GatewayClass. So ``kubectl get policyreports -A`` lists each broken object with its kind, name and
counts; a report never outgrows etcd's object size; and, owned by its object, it is garbage
collected with it. Each finding is one result: ``policy: waypoint-webhook``, ``rule:`` the code,
``result: fail`` for a denial and ``warn`` for a warning.

This module only renders; :mod:`webhook.audit.auditor` writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import Judged, Severity


@dataclass(frozen=True, slots=True)
class ReportApi:
    """One API group reports can be written to: its kinds and resources, namespaced and cluster."""

    group: str
    version: str
    kind: str
    plural: str
    cluster_kind: str
    cluster_plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def collection(self, namespace: str) -> str:
        """The API path of the reports of ``namespace`` ("" for the cluster-scoped ones)."""
        if namespace:
            return f"/apis/{self.api_version}/namespaces/{namespace}/{self.plural}"
        return f"/apis/{self.api_version}/{self.cluster_plural}"

    def every(self, namespaced: bool) -> str:
        """The path listing the reports of every namespace, or the cluster-scoped ones."""
        return f"/apis/{self.api_version}/{self.plural if namespaced else self.cluster_plural}"


WGPOLICY = ReportApi(
    "wgpolicyk8s.io", "v1alpha2", "PolicyReport", "policyreports", "ClusterPolicyReport", "clusterpolicyreports"
)
OPENREPORTS = ReportApi("openreports.io", "v1alpha1", "Report", "reports", "ClusterReport", "clusterreports")
APIS = (WGPOLICY, OPENREPORTS)
# --report-api: "auto" writes to whichever group is served, wgpolicyk8s.io when both are (what an
# existing install reads); naming a group writes only there, waiting for its CRDs.
CHOICES = {"auto": APIS, WGPOLICY.group: (WGPOLICY,), OPENREPORTS.group: (OPENREPORTS,)}
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


# A report holds at most this many results, the denials first, the last one (rule
# ResultsTruncated) counting what was left out: one object with thousands of findings (a
# ServiceEntry with 4,096 broken endpoints) would otherwise outgrow etcd's request limit and never
# be written, as Kyverno's did ("request is too large"). The summary still counts every finding.
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
    api: ReportApi = WGPOLICY,
) -> dict[str, Any]:
    """The report for one object. ``since`` carries over when each (code, field) was first reported,
    so an unchanged finding keeps its timestamp and an unchanged report is never rewritten."""
    scope, metadata = _owned_by(api_version, kind, namespace, name, uid)
    ordered = sorted(results, key=lambda r: (r.severity is not Severity.DENY, r.code, r.field))
    if len(ordered) <= MAX_RESULTS:
        shown = [_entry(r, since, now) for r in ordered]
    else:  # MAX_RESULTS in all, the last one saying how many were left out
        shown = [_entry(r, since, now) for r in ordered[: MAX_RESULTS - 1]]
        shown.append(_truncated(len(ordered) - MAX_RESULTS + 1, since.get((TRUNCATED, ""), now)))
    report: dict[str, Any] = {
        "apiVersion": api.api_version,
        "kind": api.kind if namespace else api.cluster_kind,
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
    if api is OPENREPORTS:
        report["source"] = SOURCE
        report["configuration"] = {"limits": {"maxResults": MAX_RESULTS}}
    return report


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
        report.get("source"),
        report.get("configuration"),
        labels.get(MANAGED_BY),
        meta.get("ownerReferences"),
    )
