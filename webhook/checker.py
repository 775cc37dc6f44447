"""Offline ``check``: judge manifests as the API server would admit them, without a cluster.

Each document is a CREATE against the state plus the documents before it (so one file holding
a Namespace, a Gateway and a Service is checked in order), mutated first and then validated, as
the API server does (docs/rules.md B2).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook.engine import Engine, Settings
from webhook.findings import Severity
from webhook.kinds import CLUSTER_SCOPED
from webhook.model import Malformed
from webhook.request import AdmissionRequest, GroupVersionKind
from webhook.rules.defaults import apply_patch
from webhook.state.files import SUFFIXES, Document, StateError, load_index, read_documents
from webhook.state.index import Index, IndexView


@dataclass
class Result:
    api_version: str
    kind: str
    namespace: str
    name: str
    source: str
    allowed: bool
    findings: list[dict[str, str]] = field(default_factory=list)
    patch: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "allowed": self.allowed,
            "findings": self.findings,
            "patch": self.patch,
            "source": self.source,
        }


def _request(doc: dict[str, Any], n: int) -> AdmissionRequest:
    api_version = str(doc.get("apiVersion") or "")
    kind = str(doc.get("kind") or "")
    group, _, version = api_version.rpartition("/")
    raw_meta = doc.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return AdmissionRequest(
        uid=f"check-{n}",
        kind=GroupVersionKind(group, version, kind),
        operation="CREATE",
        namespace=namespace,
        name=str(meta.get("name") or ""),
        object=doc,
    )


def check_documents(docs: Sequence[Document], index: Index, settings: Settings) -> list[Result]:
    engine = Engine(IndexView(index), settings)
    results = []
    for n, doc in enumerate(docs):
        req = _request(doc.obj, n)
        obj = dict(doc.obj)
        if req.namespace and isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {**obj["metadata"], "namespace": req.namespace}
        res = Result(
            str(obj.get("apiVersion") or ""),
            req.kind.kind,
            req.namespace,
            req.name,
            doc.source,
            True,
        )
        try:
            res.patch = engine.mutate(req).patch
            mutated = apply_patch(obj, res.patch) if res.patch else obj
            verdict = engine.validate(AdmissionRequest(**{**req.__dict__, "object": mutated}))
        except Malformed as e:
            res.allowed = False
            res.findings = [{"code": "MalformedObject", "severity": "deny", "field": e.field, "message": e.problem}]
            results.append(res)
            continue
        res.allowed = verdict.allowed
        res.findings = [
            {"code": j.code, "severity": str(j.severity), "field": j.finding.field, "message": j.finding.message}
            for j in verdict.judged
        ]
        results.append(res)
        if res.allowed:
            with contextlib.suppress(Malformed):
                index.apply(mutated)  # later documents see this one, as after a real apply
    return results


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
        if not isinstance(d.obj.get("kind"), str) or not isinstance(d.obj.get("apiVersion"), str):
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
    from webhook.findings import CODES

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
        for f in r.findings:
            who = f"{r.kind} {r.namespace}/{r.name}" if r.namespace else f"{r.kind} {r.name}"
            out.append(
                {
                    "ruleId": f["code"],
                    "level": "error" if f["severity"] == "deny" else "warning",
                    "message": {
                        "text": f"{f['message']} [{f['field']}]"
                        if who in f["message"]
                        else f"{who}: {f['message']} [{f['field']}]"
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
        who = f"{r.kind} {r.namespace}/{r.name}" if r.namespace else f"{r.kind} {r.name}"
        verdict = "allowed" if r.allowed else "DENIED"
        extra = f", defaults added: {', '.join(op['path'] for op in r.patch)}" if r.patch else ""
        lines.append(f"{who} ({r.source}): {verdict}{extra}")
        for f in r.findings:
            lines.append(f"  {f['severity']:<4}  {f['code']}: {f['message']}  [{f['field']}]")
    denied = sum(not r.allowed for r in results)
    warned = sum(any(f["severity"] == str(Severity.WARN) for f in r.findings) for r in results)
    lines.append(f"{len(results)} object(s) checked: {denied} denied, {warned} with warnings")
    return "\n".join(lines)
