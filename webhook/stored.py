"""Judging an object as it is stored: what ``audit`` and the continuous audit share.

An object already in the cluster is judged as the CREATE admission would have seen: own
references at their table severity, inherited ones as warnings, controller-owned Pods capped at
warnings (docs/rules.md B1). Every namespace is judged, the excluded ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook.engine import Engine, Settings
from webhook.kinds import CLUSTER_SCOPED
from webhook.model import Malformed
from webhook.request import AdmissionRequest, GroupVersionKind
from webhook.state.view import ClusterView


@dataclass(frozen=True, slots=True)
class Result:
    """One finding of a stored object, as the audit reports it."""

    code: str
    severity: str
    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "field": self.field, "message": self.message}


def stored_request(obj: Mapping[str, Any]) -> AdmissionRequest | None:
    """The CREATE request admission would have judged this stored object by; None when it has no
    apiVersion, kind or metadata to judge it by."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(meta, dict):
        return None
    group, _, version = api_version.rpartition("/")
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return AdmissionRequest(
        "audit",
        GroupVersionKind(group, version, kind),
        "CREATE",
        namespace,
        str(meta.get("name") or ""),
        object=dict(obj),
    )


def judge_stored(engine: Engine, req: AdmissionRequest) -> tuple[Result, ...]:
    """Judge a stored object as a CREATE: own references at their table severity, inherited ones
    as warnings, controller-owned Pods capped at warnings (SPEC B1). The engine must not exclude
    namespaces. A malformed object is one MalformedObject denial."""
    try:
        judged = engine.validate(req).judged
    except Malformed as e:
        return (Result("MalformedObject", "deny", e.field, e.problem),)
    return tuple(Result(j.code, str(j.severity), j.finding.field, j.finding.message) for j in judged)


def audit_engine(view: ClusterView, settings: Settings) -> Engine:
    """Every namespace is judged, the ones admission excludes included: the exclusion keeps the
    webhook from locking out system namespaces, and is exactly why problems there go unseen."""
    return Engine(view, replace(settings, excluded_namespaces=frozenset()))
