"""The continuous audit's core: the findings of every relevant object, kept current as the cluster
changes, recomputing only what a change can affect.

Watch threads call :meth:`Tracker.observe` after the cluster view has applied an event; it keeps a
trimmed copy of the object (only what the rules read) and marks dirty the objects whose findings
the event can change:

- a Gateway: itself, the objects naming it (canaries included), every audited object of a
  Namespace that names it (they inherit the reference), and its own pods (R0);
- a GatewayClass: every Gateway of that class, and their dependants as above;
- a Namespace: itself and every audited object in it (inheritance, allowedRoutes selectors, the
  canary weight);
- a Service or ServiceEntry: itself and the policies and routes that target it (A7), which a
  Gateway's change also marks for the Services bound to it and for the Gateway's own targets;
- anything else: itself.

:meth:`Tracker.recompute` judges the dirty objects with admission's rules, as stored (a CREATE,
like ``waypoint-webhook audit``), and returns those whose findings changed. No I/O: the shell
(:mod:`webhook.audit.auditor`) owns the threads, the API server and the reports.

Which objects are audited: Gateways, GatewayClasses and Namespaces always, and Services, Pods,
ServiceEntries and WorkloadEntries that carry a waypoint key of their own, the same set the CEL
``matchConditions`` send to admission. An object without one can only inherit its namespace's
reference, and that problem is reported once, on the Namespace, not once per Pod.
"""

from __future__ import annotations

import marshal
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.dependents import SERVICE_KINDS
from webhook.core.engine import Settings
from webhook.core.findings import Judged
from webhook.core.forwarding import consumer_forwarded
from webhook.core.index import Index, IndexView
from webhook.core.kinds import CLUSTER_SCOPED, KINDS, Role, group_of
from webhook.core.model import GATEWAY_NAME_LABEL
from webhook.core.request import stored_request
from webhook.core.stored import audit_engine, judge_stored

ObjKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds
CountKey = tuple[str, str, str, str]  # (code, severity, kind, namespace)

# (group, kind) -> audited whatever its labels; the watched kinds (workloads' pods are audited as Pods)
AUDITED: Mapping[tuple[str, str], bool] = {k.group_kind: k.role is not Role.CONSUMER for k in KINDS if k.watch_version}
# Annotations the rules read all live under these suffixes (istio.io/, sidecar.istio.io/,
# gateway.istio.io/, ambient.istio.io/); the rest (last-applied configurations…) is dropped.
_KEPT_ANNOTATION = "istio.io/"


# The spec fields each consumer kind's rules read; the rest of a consumer's spec is dropped.
_SPEC_KEPT: Mapping[str, tuple[str, ...]] = {
    "Service": ("type",),
    "Pod": ("hostNetwork",),
    "WorkloadEntry": ("labels",),
}


def _trim_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Labels, Istio annotations and the controller reference; what names the object."""
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations = {k: v for k, v in annotations.items() if isinstance(k, str) and _KEPT_ANNOTATION in k}
    owners = meta.get("ownerReferences")
    if isinstance(owners, list):
        owners = [o for o in owners if isinstance(o, dict) and o.get("controller") is True] or None
    kept = (
        ("name", meta.get("name")),
        ("namespace", meta.get("namespace")),
        ("generateName", meta.get("generateName")),
        ("uid", meta.get("uid")),
        ("labels", meta.get("labels")),
        ("annotations", annotations),
        ("ownerReferences", owners),
    )
    return {k: v for k, v in kept if v is not None}


def _trim_spec(kind: object, spec: dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, str) and kind in _SPEC_KEPT:
        return {k: spec[k] for k in _SPEC_KEPT[kind] if k in spec}
    if kind != "ServiceEntry":
        return spec  # a workload: its pod template is judged as a Pod
    kept: dict[str, Any] = {k: spec[k] for k in ("hosts", "resolution") if k in spec}  # V2
    eps = spec.get("endpoints")
    if not isinstance(eps, list):
        return {**kept, **{k: spec[k] for k in ("endpoints",) if k in spec}}
    return {**kept, "endpoints": [{"labels": e["labels"]} if isinstance(e, dict) and "labels" in e else e for e in eps]}


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the rules read of a stored object, and what a report names it by.

    Gateways, GatewayClasses and Namespaces are few and kept whole (but managedFields and
    annotations no rule reads). A consumer keeps its metadata's labels, Istio annotations and
    controller reference, and the one or two spec fields its kind's rules read; ServiceEntry
    endpoints keep their positions, because findings name them by index."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return dict(obj)
    kind = obj.get("kind")
    out: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": kind, "metadata": _trim_meta(meta)}
    spec = obj.get("spec")
    if kind in ("Gateway", "GatewayClass", "Namespace"):
        out.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")})
    elif isinstance(spec, dict):
        out["spec"] = _trim_spec(kind, spec)
    elif spec is not None:
        out["spec"] = spec  # the wrong type: the rules report it
    return out


def object_key(obj: Mapping[str, Any]) -> ObjKey | None:
    meta = obj.get("metadata")
    kind = obj.get("kind")
    if not isinstance(meta, dict) or not isinstance(kind, str):
        return None
    name = meta.get("name")
    ns = "" if kind in CLUSTER_SCOPED else meta.get("namespace") or ""
    # kinds and namespaces repeat across thousands of keys: one copy of each
    return (sys.intern(kind), sys.intern(ns) if isinstance(ns, str) else "", name if isinstance(name, str) else "")


@dataclass(frozen=True, slots=True)
class Audited:
    """One audited object: its trimmed body and its current findings.

    The body is kept marshalled: a dict of a few labels costs about 1.5 KB as Python objects and
    about 250 bytes as bytes, and decoding it again when the object is judged costs a microsecond
    or two, against tens for judging it. With 50,000 consumers that is the difference between
    fitting beside the workers and not."""

    body: bytes
    api_version: str
    uid: str
    gateway_name: str | None = None  # the gateway-name label of a Pod: a waypoint's own pod (R0)
    results: tuple[Judged, ...] = ()
    judged_uid: str = ""  # the uid the results were reported under: a recreated object is a change

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Audited:
        """Not judged yet: the tracker carries the previous results over."""
        trimmed = trim(obj)
        meta = trimmed.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        labels = meta.get("labels")
        gw = labels.get(GATEWAY_NAME_LABEL) if isinstance(labels, dict) and obj.get("kind") == "Pod" else None
        return cls(
            marshal.dumps(trimmed),
            str(trimmed.get("apiVersion") or ""),
            str(meta.get("uid") or ""),
            gw if isinstance(gw, str) else None,
        )

    @property
    def obj(self) -> dict[str, Any]:
        out: dict[str, Any] = marshal.loads(self.body)
        return out

    def judged(self, results: tuple[Judged, ...]) -> Audited:
        return replace(self, results=results, judged_uid=self.uid)


class Tracker:
    """Findings of every audited object, updated incrementally. Thread-safe: watch threads call
    :meth:`observe`, one audit thread calls :meth:`recompute` and reads the results."""

    def __init__(self, index: Index, settings: Settings) -> None:
        self.index = index
        self.engine = audit_engine(IndexView(index), settings)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[ObjKey, Audited] = {}
        self._by_namespace: dict[str, set[ObjKey]] = {}
        self._by_gateway_name: dict[tuple[str, str], set[ObjKey]] = {}  # a waypoint's own pods (R0)
        self._dirty: set[ObjKey] = set()
        self._previous: dict[ObjKey, tuple[tuple[Judged, ...], str]] = {}  # deleted, findings not yet dropped
        self.counts: Counter[CountKey] = Counter()

    # -- events (watch threads) --
    def observe(self, obj: Mapping[str, Any], deleted: bool) -> None:
        """Record one applied watch event and mark what it can affect."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return
        if kind == "ConfigMap":  # istiod's MeshConfig (V1): every ServiceEntry's visibility may change
            with self._lock:
                self._dirty.update(k for k in self._objects if k[0] == "ServiceEntry")
                self._changed.notify_all()
            return
        always = AUDITED.get((group_of(api_version), kind))
        key = object_key(obj)
        if always is None or key is None:
            return
        fresh = Audited.of(obj) if not deleted and (always or consumer_forwarded(obj)) else None
        with self._lock:
            old = self._objects.get(key)
            if fresh is not None:
                results, judged_uid = (old.results, old.judged_uid) if old else self._previous.pop(key, ((), ""))
                self._put(key, replace(fresh, results=results, judged_uid=judged_uid), old)
            elif old is not None:
                self._forget(key, old)
            self._dirty.add(key)
            self._dirty.update(self._dependants(key))
            self._changed.notify_all()

    @staticmethod
    def _pod_gateway(key: ObjKey, audited: Audited) -> tuple[str, str] | None:
        return (key[1], audited.gateway_name) if audited.gateway_name is not None else None

    def _put(self, key: ObjKey, audited: Audited, old: Audited | None) -> None:
        if old is not None:
            self._unlink(key, old)
        self._objects[key] = audited
        if key[1]:
            self._by_namespace.setdefault(key[1], set()).add(key)
        gw = self._pod_gateway(key, audited)
        if gw is not None:
            self._by_gateway_name.setdefault(gw, set()).add(key)

    def _unlink(self, key: ObjKey, old: Audited) -> None:
        if key[1]:
            bucket = self._by_namespace.get(key[1])
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._by_namespace[key[1]]
        gw = self._pod_gateway(key, old)
        if gw is not None:
            pods = self._by_gateway_name.get(gw)
            if pods is not None:
                pods.discard(key)
                if not pods:
                    del self._by_gateway_name[gw]

    def _forget(self, key: ObjKey, old: Audited) -> None:
        self._unlink(key, old)
        del self._objects[key]
        if old.results:  # dropped by the next recompute, which reports the change
            self._previous[key] = (old.results, old.judged_uid)

    def _dependants(self, key: ObjKey) -> set[ObjKey]:
        """What a change to ``key`` can affect besides itself (called under the lock)."""
        kind, ns, name = key
        if kind == "Namespace":
            return set(self._by_namespace.get(name, ()))
        if kind == "Gateway":
            return self._gateway_dependants(ns, name)
        if kind in SERVICE_KINDS:  # A7: the policies and routes that target it
            return self._targeting(kind, ns, name)
        if kind == "GatewayClass":
            out: set[ObjKey] = set()
            for info in self.index.gateways_of_class(name):
                out.add(("Gateway", info.namespace, info.name))
                out |= self._gateway_dependants(info.namespace, info.name)
            return out
        return set()

    def _gateway_dependants(self, ns: str, name: str) -> set[ObjKey]:
        out: set[ObjKey] = set(self._by_gateway_name.get((ns, name), ())) | self._targeting("Gateway", ns, name)
        for ref in self.index.consumers_of(ns, name):
            if ref.kind == "Namespace":
                out.add(("Namespace", "", ref.name))
                out |= self._by_namespace.get(ref.name, set())
            else:
                out.add((ref.kind, ref.namespace, ref.name))
                if ref.kind in SERVICE_KINDS:
                    out |= self._targeting(ref.kind, ref.namespace, ref.name)
        return out

    def _targeting(self, kind: str, ns: str, name: str) -> set[ObjKey]:
        return {(d.kind, d.namespace, d.name) for d in self.index.dependents_of(kind, ns, name)}

    # -- the audit thread --
    def wait_dirty(self, timeout: float) -> bool:
        """Block until something is dirty or ``timeout`` passes; True when something is."""
        with self._lock:
            return self._changed.wait_for(lambda: bool(self._dirty), timeout)

    def pending(self) -> int:
        """How many objects the next :meth:`recompute` will judge (what a change costs)."""
        with self._lock:
            return len(self._dirty)

    def mark_all(self) -> None:
        """Everything is dirty: a full pass (at start, then periodically, to catch what no event
        announces, e.g. a rule reading state no dependency covers)."""
        with self._lock:
            self._dirty = set(self._objects) | set(self._previous)

    def recompute(self) -> list[ObjKey]:
        """Judge every dirty object; return the keys whose findings changed (a deleted object with
        findings included). Judging happens outside the lock, so events keep flowing."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            work = [(k, self._objects.get(k)) for k in dirty]
        judged: list[tuple[ObjKey, Audited | None, tuple[Judged, ...]]] = []
        for key, audited in work:
            if audited is None:
                judged.append((key, None, ()))
                continue
            req = stored_request(audited.obj)
            judged.append((key, audited, judge_stored(self.engine, req) if req is not None else ()))
        changed: list[ObjKey] = []
        with self._lock:
            for key, audited, results in judged:
                current = self._objects.get(key)
                if current is not audited:
                    continue  # replaced or deleted meanwhile: that event marked it dirty again
                if current is None:
                    before = self._previous.pop(key, ((), ""))[0]
                    if not before:
                        continue
                else:
                    before = current.results
                    if results == before and current.judged_uid == current.uid:
                        continue
                    self._objects[key] = current.judged(results)
                    if not results and not before:
                        continue  # a new uid, but nothing to report either way
                self._count(key, before, -1)
                self._count(key, results, +1)
                changed.append(key)
        return changed

    def _count(self, key: ObjKey, results: tuple[Judged, ...], sign: int) -> None:
        for r in results:
            ck = (str(r.code), str(r.severity), key[0], key[1])
            self.counts[ck] += sign
            if self.counts[ck] <= 0:
                del self.counts[ck]

    # -- reads --
    def get(self, key: ObjKey) -> Audited | None:
        with self._lock:
            return self._objects.get(key)

    def with_findings(self) -> dict[ObjKey, Audited]:
        with self._lock:
            return {k: a for k, a in self._objects.items() if a.results}

    def size(self) -> int:
        with self._lock:
            return len(self._objects)
