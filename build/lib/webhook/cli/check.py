"""Offline ``check``: judge manifests as the API server would admit them, without a cluster.

Each document is a CREATE against the state plus the documents before it (so one file holding
a Namespace, a Gateway and a Service is checked in order), mutated first and then validated, as
the API server does (docs/rules.md B2).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from webhook.cluster.files import SUFFIXES, Document, StateError, load_index, read_documents
from webhook.core.engine import Engine, Settings
from webhook.core.findings import Severity, malformed
from webhook.core.index import Index, IndexView
from webhook.core.model import Malformed
from webhook.core.request import stored_request
from webhook.core.result import ObjectRef, Result
from webhook.core.rules.defaults import apply_patch


def check_documents(docs: Sequence[Document], index: Index, settings: Settings) -> list[Result]:
    engine = Engine(IndexView(index), settings)
    results = []
    for n, doc in enumerate(docs):
        result, admitted = _check_one(engine, doc, n)
        results.append(result)
        if admitted is not None:
            with contextlib.suppress(Malformed):
                index.apply(admitted)  # later documents see this one, as after a real apply
    return results


def _check_one(engine: Engine, doc: Document, n: int) -> tuple[Result, dict[str, Any] | None]:
    """One document, mutated then validated as the API server does; and the object as it would be
    stored, when it is admitted."""
    req = stored_request(doc.obj, f"check-{n}")
    if req is None:
        raise StateError(f"{doc.source}: document has no apiVersion/kind")
    obj = dict(doc.obj)
    if req.namespace and isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {**obj["metadata"], "namespace": req.namespace}
    ref = ObjectRef.of(obj)
    try:
        patch = engine.mutate(req).patch
        mutated = apply_patch(obj, patch) if patch else obj
        verdict = engine.validate(replace(req, object=mutated))
    except Malformed as e:
        return Result(ref=ref, findings=(malformed(e.field, e.problem),), source=doc.source), None
    result = Result(ref=ref, findings=tuple(verdict.judged), patch=tuple(patch), source=doc.source)
    return result, mutated if result.allowed else None


def check_files(paths: Sequence[str], state: str | None, settings: Settings) -> list[Result]:
    """Raises StateError for unusable input (exit status 2)."""
    index = load_index(Path(state)) if state else Index()
    docs: list[Document] = []
    for p in paths:
        if p == "-":
            docs += read_documents(Path("<stdin>"), sys.stdin.read())
            continue
        path = Path(p)
        if not path.is_file():
            raise StateError(f"{p}: no such file")
        docs += read_documents(path)
    for d in docs:
        if stored_request(d.obj) is None:
            raise StateError(f"{d.source}: document has no apiVersion/kind")
    return check_documents(docs, index, settings)


def expand_paths(paths: Sequence[str], recursive: bool) -> list[str]:
    """Files as given, in order; a directory gives its manifests (sorted), and with ``recursive``
    those of its subdirectories too, as ``kubectl apply -f dir -R`` reads them."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir():
            found = path.rglob("*") if recursive else path.glob("*")
            out += sorted(str(f) for f in found if f.is_file() and f.suffix in SUFFIXES)
        else:
            out.append(p)
    return out


def _location(source: str) -> tuple[str, int | None]:
    path, _, line = source.rpartition(":")
    return (path, int(line)) if line.isdigit() and path else (source, None)


def sarif(results: Sequence[Result]) -> dict[str, Any]:
    """SARIF 2.1.0 for code-scanning views: one result per finding at the document's file and line."""
    from webhook.core.findings import CODES

    rules = [
        {
            "id": code,
            "shortDescription": {"text": info.summary},
            "helpUri": f"docs/rules.md#{code.lower()}",
            "defaultConfiguration": {"level": "error" if info.default is Severity.DENY else "warning"},
        }
        for code, info in CODES.items()
    ]
    out = []
    for r in results:
        path, line = _location(r.source)
        region = {"region": {"startLine": line}} if line else {}
        who = r.ref.display()
        for f in r.findings:
            out.append(
                {
                    "ruleId": str(f.code),
                    "level": "error" if f.severity is Severity.DENY else "warning",
                    "message": {
                        "text": f"{f.message} [{f.field}]" if who in f.message else f"{who}: {f.message} [{f.field}]"
                    },
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": path}, **region}}],
                }
            )
    return {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "waypoint-webhook", "rules": rules}}, "results": out}],
    }


def render_text(results: Sequence[Result]) -> str:
    """Denied objects first, then those with warnings, then the rest (each group in input order)."""
    lines = []
    ordered = sorted(results, key=lambda r: (r.allowed, not r.findings))
    for r in ordered:
        verdict = "allowed" if r.allowed else "DENIED"
        extra = f", defaults added: {', '.join(op['path'] for op in r.patch)}" if r.patch else ""
        lines.append(f"{r.ref.display()} ({r.source}): {verdict}{extra}")
        lines += [f"  {f.severity!s:<4}  {f.code}: {f.message}  [{f.field}]" for f in r.findings]
    denied = sum(not r.allowed for r in results)
    warned = sum(any(f.severity is Severity.WARN for f in r.findings) for r in results)
    lines.append(f"{len(results)} object(s) checked: {denied} denied, {warned} with warnings")
    return "\n".join(lines)
