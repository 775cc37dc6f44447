"""Offline ``check``: judge manifests as the cluster will hold them after ``kubectl apply -f dir/``.

Order-independent: every input (and the ``--state``, or the live cluster with ``--kubeconfig``)
forms the cluster view first; then each object is judged against that view as a CREATE,
mutated first and then validated as the API server does (docs/rules.md B2). So a Namespace in one
file and its waypoint in another give the same answer in any order, and the results come out
sorted by file and line, whatever order the files were named in.

Waypoints declared in the inputs are taken as ready: istiod will give them addresses, and a
pipeline that warns on every consumer of a waypoint it is about to create says nothing useful.
``--as-written`` judges their ``status`` exactly as written instead. Objects in the cluster view
from ``--state`` are always taken as written.

Every namespace is judged. An object admission would never see (an excluded namespace, or no
waypoint key for the webhooks' matchConditions) is judged all the same, because istiod reads it,
and marked as such; ``--admission`` simulates admission exactly instead, reporting those objects
as skipped with the reason.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.cli import suppress
from webhook.cluster.files import Document, mesh_of
from webhook.cluster.inputs import Skipped
from webhook.core.engine import Engine, Settings
from webhook.core.findings import malformed
from webhook.core.forwarding import not_reviewed
from webhook.core.index import Index, IndexView
from webhook.core.kinds import KindSpec, group_of, spec_of
from webhook.core.model import Malformed
from webhook.core.request import AdmissionRequest, stored_request
from webhook.core.result import ObjectRef, Result
from webhook.core.rules.defaults import apply_patch


@dataclass(frozen=True, kw_only=True)
class CheckOptions:
    as_written: bool = False  # judge the inputs' waypoints by their status as written
    admission: bool = False  # simulate admission exactly: what it would not review is skipped
    suppressions: tuple[suppress.Suppression, ...] = ()


@dataclass(frozen=True)
class Judged:
    """The outcome of judging the inputs."""

    results: list[Result]
    skipped: list[Skipped]
    not_judged: Counter[str]


@dataclass(frozen=True)
class Input:
    """One handled document, normalised as the API server would store it (a default namespace)."""

    doc: Document
    spec: KindSpec
    req: AdmissionRequest
    obj: dict[str, Any]


def _source_key(doc: Document) -> tuple[str, int]:
    path, _, line = doc.source.rpartition(":")
    return (path, int(line)) if line.isdigit() else (doc.source, 0)


def _inputs(docs: Sequence[Document], not_judged: Counter[str]) -> list[Input]:
    out = []
    for n, doc in enumerate(sorted(docs, key=_source_key)):
        req = stored_request(doc.obj, f"check-{n}")
        spec = spec_of(group_of(str(doc.obj.get("apiVersion"))), str(doc.obj.get("kind")))
        if req is None or spec is None:
            not_judged[f"{doc.obj.get('kind')} ({doc.obj.get('apiVersion')})"] += 1
            continue
        obj = dict(doc.obj)
        if req.namespace and isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {**obj["metadata"], "namespace": req.namespace}
        out.append(Input(doc, spec, replace(req, object=obj), obj))
    return out


def assumed_ready(obj: dict[str, Any]) -> dict[str, Any]:
    """A Gateway without addresses as istiod will make it: with one (its Service's name)."""
    status, meta = obj.get("status"), obj.get("metadata")
    if obj.get("kind") != "Gateway" or not isinstance(meta, dict) or not isinstance(status, dict | None):
        return obj  # not a Gateway, or one the rules will report as malformed
    if status and status.get("addresses"):
        return obj
    address = f"{meta.get('name')}.{meta.get('namespace') or 'default'}.svc.cluster.local"
    return {**obj, "status": {**(status or {}), "addresses": [{"type": "Hostname", "value": address}]}}


def _apply(index: Index, obj: dict[str, Any]) -> None:
    with contextlib.suppress(Malformed):  # judged below, where it is reported
        index.apply(obj)


def _view(inputs: Sequence[Input], state: Index, engine: Engine, opts: CheckOptions) -> dict[int, list[Any]]:
    """Every input into the view, defaults (M1, M2) applied as the mutating webhook would; returns
    each input's patch."""
    for i in inputs:
        _apply(state, i.obj if opts.as_written else assumed_ready(i.obj))
    patches: dict[int, list[Any]] = {}
    for n, i in enumerate(inputs):
        with contextlib.suppress(Malformed):
            patches[n] = engine.mutate(i.req).patch
        if patches.get(n):
            mutated = apply_patch(i.obj, patches[n])
            _apply(state, mutated if opts.as_written else assumed_ready(mutated))
    return patches


def _judge(engine: Engine, i: Input, patch: list[Any] | None, unseen: str) -> Result:
    ref = ObjectRef.of(i.obj)
    if patch is None:  # the mutating webhook could not even parse it
        try:
            engine.mutate(i.req)
        except Malformed as e:
            return Result(ref=ref, findings=(malformed(e.field, e.problem),), source=i.doc.source, not_reviewed=unseen)
        patch = []
    try:
        verdict = engine.validate(replace(i.req, object=apply_patch(i.obj, patch) if patch else i.obj))
    except Malformed as e:
        return Result(ref=ref, findings=(malformed(e.field, e.problem),), source=i.doc.source, not_reviewed=unseen)
    return Result(ref=ref, findings=tuple(verdict.judged), patch=tuple(patch), source=i.doc.source, not_reviewed=unseen)


def check_documents(docs: Sequence[Document], state: Index, settings: Settings, opts: CheckOptions) -> Judged:
    """Judge ``docs`` against ``state`` plus themselves (``state`` receives them)."""
    not_judged: Counter[str] = Counter()
    for doc in docs:  # V1: istiod's MeshConfig may be among the inputs
        state.mesh = mesh_of(doc.obj) or state.mesh
    inputs = _inputs(docs, not_judged)
    engine = Engine(IndexView(state), replace(settings, excluded_namespaces=frozenset()))
    patches = _view(inputs, state, engine, opts)
    results, skipped = [], []
    for n, i in enumerate(inputs):
        unseen = not_reviewed(i.obj, settings.excluded_namespaces)
        if unseen and opts.admission:
            skipped.append(Skipped(i.doc.source, f"not reviewed by admission: {unseen}"))
            continue
        result = _judge(engine, i, patches.get(n), unseen)
        results.append(suppress.apply(result, opts.suppressions))
    return Judged(results, skipped, not_judged)
