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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webhook.core.engine import Settings
from webhook.core.findings import Severity
from webhook.core.forwarding import not_reviewed
from webhook.core.index import Index, IndexView
from webhook.core.model import Malformed, MeshConfig
from webhook.core.request import AdmissionRequest, stored_request
from webhook.core.result import ObjectRef, Result
from webhook.core.stored import Source, audit_engine, judge_stored


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    codes: frozenset[str] = frozenset()
    min_severity: Severity = Severity.WARN
    kinds: frozenset[str] = frozenset()

    def judges(self, req: AdmissionRequest) -> bool:
        if self.kinds and req.kind.kind not in self.kinds:
            return False
        if not self.namespace or req.namespace == self.namespace:
            return True
        return req.kind.kind == "Namespace" and req.name == self.namespace


@dataclass
class Audit:
    results: list[Result]  # the objects with findings that pass the filters
    judged: int  # how many objects were judged


def run(source: Source, settings: Settings, filters: Filters) -> list[Result]:
    """Judge every object the source yields; only objects with findings that pass the filters."""
    return audit(source, settings, filters).results


def audit(
    source: Source, settings: Settings, filters: Filters, mesh: Callable[[], MeshConfig | None] = lambda: None
) -> Audit:
    """Judge every object the source yields, counting them. ``mesh`` gives the MeshConfig once the
    view is built (it may come from a ConfigMap among the objects)."""
    index = Index()
    for obj, where in source():
        try:
            index.apply(obj)
        except Malformed as e:
            print(f"waypoint-webhook audit: skipping {where}: {e}", file=sys.stderr)
    index.mesh = mesh()
    engine = audit_engine(IndexView(index), settings)
    entries, judged = [], 0
    for obj, where in source():
        req = stored_request(obj)
        if req is None or not filters.judges(req):
            continue
        judged += 1
        findings = tuple(
            j
            for j in judge_stored(engine, req)
            if j.severity >= filters.min_severity and (not filters.codes or j.code in filters.codes)
        )
        if findings:
            unseen = not_reviewed(obj, settings.excluded_namespaces)
            entries.append(Result(ref=ObjectRef.of(obj), findings=findings, source=where, not_reviewed=unseen))
    return Audit(entries, judged)


def render_text(entries: Sequence[Result]) -> str:
    """Grouped by namespace (cluster-scoped objects first), denials before warnings, then a summary."""
    lines = []
    order = sorted(entries, key=lambda e: (e.ref.namespace, e.allowed, e.ref.kind, e.ref.name))
    current = None
    for e in order:
        if e.ref.namespace != current:
            current = e.ref.namespace
            lines.append(f"namespace {current}" if current else "cluster-scoped")
        verdict = "DENIED" if not e.allowed else "warnings" if e.findings else "suppressed"
        unseen = f" (not reviewed by admission: {e.not_reviewed})" if e.not_reviewed else ""
        lines.append(f"  {e.ref.kind} {e.ref.name}: {verdict}{unseen}")
        for f in sorted(e.findings, key=lambda f: f.severity is not Severity.DENY):
            lines.append(f"    {f.severity!s:<4}  {f.code}: {f.message}  [{f.field}]")
        lines += [f"    supp  {f.code}: {f.message}  [{f.field}]" for f in e.suppressed]
    denied = sum(not e.allowed for e in entries)
    lines.append(f"{len(entries)} object(s) with findings: {denied} would be denied, {len(entries) - denied} warned")
    return "\n".join(lines)
