"""``waypoint-webhook audit``: what is already broken in a cluster.

Admission only sees changes: objects admitted before the webhook was installed, in excluded
namespaces, skipped by the CEL conditions, or broken later by a change elsewhere (a waypoint
deleted, its allowedRoutes narrowed) stay broken silently. The audit judges every relevant object
as it is stored, against the current state, with the same rules and severities as admission (as a
CREATE: own references at their table severity, inherited ones as warnings).

Two passes over the source: the first builds the view (the index keeps only what the rules need),
the second judges objects one page at a time and keeps only their findings, so memory is bounded
by the view, not by the cluster's objects or the output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from webhook import kubeapi
from webhook.admission import AdmissionRequest, GroupVersionKind
from webhook.engine import Engine, Settings
from webhook.findings import Severity
from webhook.model import Malformed
from webhook.state.files import manifest_files, read_documents
from webhook.state.index import Index, IndexView
from webhook.state.live import RESOURCES
from webhook.state.view import ClusterView

CLUSTER_SCOPED = frozenset({"Namespace", "GatewayClass"})
# What the audit lists from a live cluster: every resource the live view watches (all of them, no
# label selector: an unlabelled Pod can still inherit its namespace's waypoint), and the workloads
# whose pod templates are judged as Pods. (path, apiVersion, kind)
WORKLOADS: tuple[tuple[str, str, str], ...] = (
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/apps/v1/statefulsets", "apps/v1", "StatefulSet"),
    ("/apis/apps/v1/daemonsets", "apps/v1", "DaemonSet"),
    ("/apis/apps/v1/replicasets", "apps/v1", "ReplicaSet"),
    ("/apis/batch/v1/jobs", "batch/v1", "Job"),
    ("/apis/batch/v1/cronjobs", "batch/v1", "CronJob"),
)
LIVE: tuple[tuple[str, str, str], ...] = (*((r.path, r.api_version, r.kind) for r in RESOURCES), *WORKLOADS)


@dataclass
class Entry:
    """One object with findings, in the shape of ``check -o json`` plus where it came from."""

    api_version: str
    kind: str
    namespace: str
    name: str
    source: str
    findings: list[dict[str, str]] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return all(f["severity"] != "deny" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name,
                "allowed": self.allowed, "findings": self.findings, "patch": [], "source": self.source}


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    codes: frozenset[str] = frozenset()
    min_severity: Severity = Severity.WARN


Source = Callable[[], Iterator[tuple[dict[str, Any], str]]]  # (object, where it came from)


def state_source(paths: Sequence[str]) -> Source:
    """Objects from YAML files (a file or a directory each), as ``--state`` reads them."""
    def docs() -> Iterator[tuple[dict[str, Any], str]]:
        for p in paths:
            for f in manifest_files(Path(p)):
                for doc in read_documents(f):
                    yield doc.obj, doc.source
    return docs


def live_source(api: Any, progress: Callable[[str], None]) -> Source:
    """Objects from the API server, listed page by page (500 at a time); a resource the cluster
    does not serve (a CRD not installed) is skipped."""
    def docs() -> Iterator[tuple[dict[str, Any], str]]:
        for path, api_version, kind in LIVE:
            count = 0
            try:
                for item in kubeapi.list_items(api, path):
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    count += 1
                    yield item, "cluster"
            except kubeapi.NotServed:
                pass
            progress(f"{path.rsplit('/', 1)[1]}: {count}")
    return docs


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
    return AdmissionRequest("audit", GroupVersionKind(group, version, kind), "CREATE", namespace,
                            str(meta.get("name") or ""), object=dict(obj))


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


def run(source: Source, settings: Settings, filters: Filters) -> list[Entry]:
    """Judge every object the source yields; only objects with findings that pass the filters."""
    index = Index()
    for obj, where in source():
        try:
            index.apply(obj)
        except Malformed as e:
            print(f"waypoint-webhook audit: skipping {where}: {e}", file=sys.stderr)
    engine = audit_engine(IndexView(index), settings)
    entries = []
    for obj, where in source():
        req = stored_request(obj)
        if req is None or (filters.namespace and req.namespace != filters.namespace
                           and not (req.kind.kind == "Namespace" and req.name == filters.namespace)):
            continue
        findings = [
            r.to_json() for r in judge_stored(engine, req)
            if Severity.parse(r.severity) >= filters.min_severity and (not filters.codes or r.code in filters.codes)
        ]
        if findings:
            entries.append(Entry(str(obj.get("apiVersion")), req.kind.kind, req.namespace, req.name, where, findings))
    return entries


def render_text(entries: Sequence[Entry]) -> str:
    """Grouped by namespace (cluster-scoped objects first), denials before warnings, then a summary."""
    lines = []
    order = sorted(entries, key=lambda e: (e.namespace, e.allowed, e.kind, e.name))
    current = None
    for e in order:
        if e.namespace != current:
            current = e.namespace
            lines.append(f"namespace {e.namespace}" if e.namespace else "cluster-scoped")
        lines.append(f"  {e.kind} {e.name}: {'DENIED' if not e.allowed else 'warnings'}")
        for f in sorted(e.findings, key=lambda f: f["severity"] != "deny"):
            lines.append(f"    {f['severity']:<4}  {f['code']}: {f['message']}  [{f['field']}]")
    denied = sum(not e.allowed for e in entries)
    lines.append(f"{len(entries)} object(s) with findings: {denied} would be denied, {len(entries) - denied} warned")
    return "\n".join(lines)


def exit_status(entries: Sequence[Entry], fail_on: str | None) -> int:
    if fail_on == "deny" and any(not e.allowed for e in entries):
        return 1
    if fail_on == "warn" and entries:
        return 1
    return 0
