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
from collections.abc import Sequence
from dataclasses import dataclass

from webhook.core.engine import Settings
from webhook.core.findings import Severity
from webhook.core.index import Index, IndexView
from webhook.core.model import Malformed
from webhook.core.request import stored_request
from webhook.core.result import ObjectRef, Result
from webhook.core.stored import Source, audit_engine, judge_stored


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    codes: frozenset[str] = frozenset()
    min_severity: Severity = Severity.WARN


def run(source: Source, settings: Settings, filters: Filters) -> list[Result]:
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
        if req is None or (
            filters.namespace
            and req.namespace != filters.namespace
            and not (req.kind.kind == "Namespace" and req.name == filters.namespace)
        ):
            continue
        findings = tuple(
            j
            for j in judge_stored(engine, req)
            if j.severity >= filters.min_severity and (not filters.codes or j.code in filters.codes)
        )
        if findings:
            entries.append(Result(ref=ObjectRef.of(obj), findings=findings, source=where))
    return entries


def render_text(entries: Sequence[Result]) -> str:
    """Grouped by namespace (cluster-scoped objects first), denials before warnings, then a summary."""
    lines = []
    order = sorted(entries, key=lambda e: (e.ref.namespace, e.allowed, e.ref.kind, e.ref.name))
    current = None
    for e in order:
        if e.ref.namespace != current:
            current = e.ref.namespace
            lines.append(f"namespace {current}" if current else "cluster-scoped")
        lines.append(f"  {e.ref.kind} {e.ref.name}: {'DENIED' if not e.allowed else 'warnings'}")
        for f in sorted(e.findings, key=lambda f: f.severity is not Severity.DENY):
            lines.append(f"    {f.severity!s:<4}  {f.code}: {f.message}  [{f.field}]")
    denied = sum(not e.allowed for e in entries)
    lines.append(f"{len(entries)} object(s) with findings: {denied} would be denied, {len(entries) - denied} warned")
    return "\n".join(lines)


def exit_status(entries: Sequence[Result], fail_on: str | None) -> int:
    if fail_on == "deny" and any(not e.allowed for e in entries):
        return 1
    if fail_on == "warn" and entries:
        return 1
    return 0
