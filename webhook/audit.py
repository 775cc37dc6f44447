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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook import kubeapi
from webhook.checker import Result
from webhook.engine import Settings
from webhook.findings import Severity
from webhook.kinds import KINDS, WATCHED
from webhook.model import Malformed
from webhook.state.files import manifest_files, read_documents
from webhook.state.index import Index, IndexView
from webhook.stored import audit_engine, judge_stored, stored_request

# What the audit lists from a live cluster: every handled kind, whole (no label selector: an
# unlabelled Pod can still inherit its namespace's waypoint), the workloads included, whose pod
# templates are judged as Pods. (path, apiVersion, kind)
LIVE: tuple[tuple[str, str, str], ...] = tuple(
    (k.collection, k.api_version(), k.kind) for k in (*WATCHED, *(k for k in KINDS if not k.watch_version))
)


# One object with findings: the entry shape of ``check -o json``, with where it came from.
Entry = Result


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
        if req is None or (
            filters.namespace
            and req.namespace != filters.namespace
            and not (req.kind.kind == "Namespace" and req.name == filters.namespace)
        ):
            continue
        findings = [
            r.to_json()
            for r in judge_stored(engine, req)
            if Severity.parse(r.severity) >= filters.min_severity and (not filters.codes or r.code in filters.codes)
        ]
        if findings:
            allowed = all(f["severity"] != "deny" for f in findings)
            entries.append(
                Entry(str(obj.get("apiVersion")), req.kind.kind, req.namespace, req.name, where, allowed, findings)
            )
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
