"""In-memory index shared by both cluster-view backends.

Writes take a lock; reads of single entries rely on dict lookups being atomic, so the
admission path never blocks on a watch event. ``consumers_of`` copies under the lock because
it iterates.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.core.dependents import SERVICE_KINDS, parse_policy, parse_route, target_problem
from webhook.core.kinds import Role, group_of, spec_of
from webhook.core.model import (
    CANARY_KINDS,
    CANARY_WEIGHT,
    INGRESS_USE_WAYPOINT,
    SERVICE_TRAFFIC,
    USE_WAYPOINT,
    USE_WAYPOINT_CANARY,
    USE_WAYPOINT_CANARY_NAMESPACE,
    USE_WAYPOINT_NAMESPACE,
    WORKLOAD_TRAFFIC,
    Consumer,
    Malformed,
    MeshConfig,
    parse_consumer,
    parse_gateway,
    parse_gateway_class,
    parse_namespace_labels,
)
from webhook.core.view import ClassInfo, ConsumerRef, DependentRef, WaypointInfo, default_namespace_labels

Key = tuple[str, str]  # (namespace, name)
ConsumerKey = tuple[str, str, str]  # (kind, namespace, name)

_EMPTY: Mapping[str, str] = {}
NAMESPACE_ANNOTATIONS = frozenset({CANARY_WEIGHT})


def settle_heap() -> None:
    """Collect, then freeze what survives, so later full collections skip the (large, long-lived)
    view: a full collection over 60,000 indexed objects costs tens of milliseconds of tail latency.
    Unfreezing first lets the previous state, now garbage, be freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def references(consumer: Consumer) -> list[tuple[Key, ConsumerRef]]:
    """The waypoints an object names with its own labels (L1, L2, R4)."""
    out: list[tuple[Key, ConsumerRef]] = []
    ns = consumer.namespace

    ns = sys.intern(ns)  # shared by every consumer of a namespace
    kind = sys.intern(consumer.kind)

    def ref(labels: Mapping[str, str], traffic: frozenset[str], detail: str) -> None:
        name = labels.get(USE_WAYPOINT)
        if name is None or name == "none":
            return
        target_ns = labels.get(USE_WAYPOINT_NAMESPACE, ns)
        out.append(
            ((sys.intern(target_ns), sys.intern(name)), ConsumerRef(kind, ns, consumer.meta.name, traffic, detail))
        )

    ref(consumer.labels, consumer.traffic, "")
    if consumer.kind in CANARY_KINDS:  # R6: a canary reference counts for WaypointInUse too
        canary = consumer.labels.get(USE_WAYPOINT_CANARY)
        if canary and canary != "none":
            target_ns = consumer.labels.get(USE_WAYPOINT_CANARY_NAMESPACE, ns)
            out.append(
                (
                    (sys.intern(target_ns), sys.intern(canary)),
                    ConsumerRef(kind, ns, consumer.meta.name, SERVICE_TRAFFIC, "canary"),
                )
            )
    for path, labels in consumer.endpoints:
        ref(labels, WORKLOAD_TRAFFIC, path)
    return out


def waypoint_info(raw: Mapping[str, Any]) -> WaypointInfo:
    return WaypointInfo.of(parse_gateway(raw))


def dependent_targets(raw: Mapping[str, Any], kind: str, role: Role) -> tuple[DependentRef, tuple[ConsumerKey, ...]]:
    """A7: what a policy or route is, and the Services, ServiceEntries and Gateways whose waypoint
    applies it (Z3, Z9); the targets that can never apply are left out (InvalidPolicyTarget)."""
    if role is Role.ROUTE:
        r = parse_route(kind, raw)
        targets = tuple((p.kind, p.namespace, p.name) for p in r.parents)
        return DependentRef(kind, r.namespace, r.meta.name), targets
    p = parse_policy(kind, raw)
    # A GatewayClass target applies to every waypoint: no Service's binding decides it.
    keep = [t for t in p.targets if t.kind != "GatewayClass" and target_problem(kind, t) is None]
    fail_open = kind == "AuthorizationPolicy" and p.action in ("ALLOW", "DENY", "CUSTOM")
    ref = DependentRef(kind, p.namespace, p.meta.name, fail_open)
    return ref, tuple((t.kind, p.namespace, t.name) for t in keep)


class Index:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.gateways: dict[Key, WaypointInfo] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.namespaces: dict[str, Mapping[str, str]] = {}
        self.namespace_notes: dict[str, Mapping[str, str]] = {}  # the few annotations rules read
        self._refs: dict[ConsumerKey, tuple[Key, ...]] = {}
        self._by_waypoint: dict[Key, dict[tuple[ConsumerKey, str], ConsumerRef]] = {}
        # A7: every Service and ServiceEntry, with only the labels binding reads (most have none and
        # share one empty mapping), so a policy's or a route's target can be found and resolved.
        self._services: dict[ConsumerKey, Mapping[str, str]] = {}
        # A7's reverse index: target (kind, namespace, name) -> the policies and routes it carries.
        self._dependents: dict[ConsumerKey, dict[ConsumerKey, DependentRef]] = {}
        self._targets_of: dict[ConsumerKey, tuple[ConsumerKey, ...]] = {}
        self._targeted: dict[str, dict[tuple[str, str], int]] = {}  # namespace -> targeted (kind, name): count
        # V1: istiod's MeshConfig when a backend knows it (None: unknown, V1 cannot run).
        self.mesh: MeshConfig | None = None

    # -- reads (ClusterView) --
    def namespace_labels(self, name: str) -> Mapping[str, str]:
        labels = self.namespaces.get(name)
        return labels if labels is not None else default_namespace_labels(name)

    def namespace_annotations(self, name: str) -> Mapping[str, str]:
        return self.namespace_notes.get(name, _EMPTY)

    def gateway(self, namespace: str, name: str) -> WaypointInfo | None:
        return self.gateways.get((namespace, name))

    def class_waypoint_for(self, class_name: str) -> str | None:
        info = self.classes.get(class_name)
        return info.waypoint_for if info is not None else None

    def gateway_class(self, class_name: str) -> ClassInfo | None:
        return self.classes.get(class_name)

    def consumers_of(self, namespace: str, name: str) -> Sequence[ConsumerRef]:
        """An unordered copy: callers order only what they show (a DELETE names two of N)."""
        with self._lock:
            found = self._by_waypoint.get((namespace, name))
            return list(found.values()) if found else []

    def service_labels(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        return self._services.get((kind, namespace, name))

    def gateways_of_class(self, class_name: str) -> list[WaypointInfo]:
        """O(Gateways): asked only for a GatewayClass's change, which is rare."""
        return [g for g in list(self.gateways.values()) if g.class_name == class_name]

    def service_entries_of(self, namespace: str) -> list[tuple[Key, ConsumerRef]]:
        """V1: the ServiceEntries of a namespace and the waypoint each names for its service traffic.
        O(references): a Namespace relabel is rare, and only then is this asked."""
        with self._lock:
            return [
                (target, ref)
                for target, refs in self._by_waypoint.items()
                for ref in refs.values()
                if ref.kind == "ServiceEntry" and ref.namespace == namespace and not ref.detail
            ]

    # -- writes --
    def apply(self, raw: Mapping[str, Any], *, deleted: bool = False) -> bool:
        """Add, replace or remove one object; returns False for kinds the index does not keep.

        Raises :class:`Malformed` for a tracked kind whose fields have the wrong shape.
        """
        api_version = raw.get("apiVersion") or ""
        kind = raw.get("kind") or ""
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return False
        spec = spec_of(group_of(api_version), kind)
        if spec is None or spec.role is Role.WORKLOAD:
            return False
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict):
            raise Malformed("metadata", "must be an object")
        name, namespace = meta.get("name") or "", meta.get("namespace") or ""
        if spec.role is Role.GATEWAY:
            if deleted:
                self.delete_gateway(namespace, name)
            else:
                self.put_gateway(waypoint_info(raw))
        elif spec.role is Role.CLASS:
            self._apply_class(raw, name, deleted)
        elif spec.role is Role.NAMESPACE:
            self._apply_namespace(raw, name, deleted)
        elif spec.role in (Role.POLICY, Role.ROUTE):
            key = (kind, namespace, name)
            if deleted:
                self.delete_dependent(key)
            else:
                self.put_dependent(key, *dependent_targets(raw, kind, spec.role))
        elif deleted:
            self.delete_consumer((kind, namespace, name))
        else:
            self.put_consumer(parse_consumer(kind, raw))
        return True

    def put_dependent(self, key: ConsumerKey, ref: DependentRef, targets: tuple[ConsumerKey, ...]) -> None:
        with self._lock:
            self._unlink_dependent(key)
            if targets:
                self._targets_of[key] = targets
                for t in targets:
                    self._dependents.setdefault(t, {})[key] = ref
                    if t[0] in SERVICE_KINDS:
                        counts = self._targeted.setdefault(t[1], {})
                        counts[(t[0], t[2])] = counts.get((t[0], t[2]), 0) + 1

    def delete_dependent(self, key: ConsumerKey) -> None:
        with self._lock:
            self._unlink_dependent(key)

    def _unlink_dependent(self, key: ConsumerKey) -> None:
        for t in self._targets_of.pop(key, ()):
            bucket = self._dependents.get(t)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._dependents[t]
            counts = self._targeted.get(t[1])
            if t[0] in SERVICE_KINDS and counts is not None:
                left = counts.get((t[0], t[2]), 0) - 1
                if left > 0:
                    counts[(t[0], t[2])] = left
                else:
                    counts.pop((t[0], t[2]), None)
                if not counts:
                    del self._targeted[t[1]]

    def dependents_of(self, kind: str, namespace: str, name: str) -> list[DependentRef]:
        with self._lock:
            found = self._dependents.get((kind, namespace, name))
            return list(found.values()) if found else []

    def targeted_in(self, namespace: str) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._targeted.get(namespace, {}))

    def _apply_class(self, raw: Mapping[str, Any], name: str, deleted: bool) -> None:
        with self._lock:
            if deleted:
                self.classes.pop(name, None)
            else:
                gc = parse_gateway_class(raw)
                self.classes[name] = ClassInfo(gc.waypoint_for, gc.controller, gc.inbound_binding)

    def _apply_namespace(self, raw: Mapping[str, Any], name: str, deleted: bool) -> None:
        if deleted:
            with self._lock:
                self.namespaces.pop(name, None)
                self.namespace_notes.pop(name, None)
            self.delete_consumer(("Namespace", name, name))
            return
        ns_name, labels = parse_namespace_labels(raw)
        consumer = parse_consumer("Namespace", raw)
        notes = {k: v for k, v in consumer.meta.annotations.items() if k in NAMESPACE_ANNOTATIONS}
        with self._lock:
            self.namespaces[ns_name] = labels
            if notes:
                self.namespace_notes[ns_name] = notes
            else:
                self.namespace_notes.pop(ns_name, None)
        self.put_consumer(consumer)

    def put_gateway(self, info: WaypointInfo) -> None:
        with self._lock:
            self.gateways[(info.namespace, info.name)] = info

    def delete_gateway(self, namespace: str, name: str) -> None:
        with self._lock:
            self.gateways.pop((namespace, name), None)

    def put_consumer(self, consumer: Consumer) -> None:
        key = (
            consumer.kind,
            consumer.namespace if consumer.kind != "Namespace" else consumer.meta.name,
            consumer.meta.name,
        )
        refs = references(consumer)
        with self._lock:
            self._unlink(key)
            if consumer.kind in SERVICE_KINDS:
                self._services[key] = binding_labels(consumer.labels)
            if refs:
                self._refs[key] = tuple(wp for wp, _ in refs)
                for wp, r in refs:
                    self._by_waypoint.setdefault(wp, {})[(key, r.detail)] = r

    def delete_consumer(self, key: ConsumerKey) -> None:
        with self._lock:
            self._unlink(key)
            self._services.pop(key, None)

    def _unlink(self, key: ConsumerKey) -> None:
        for wp in self._refs.pop(key, ()):
            bucket = self._by_waypoint.get(wp)
            if bucket is None:
                continue
            for k in [k for k in bucket if k[0] == key]:
                del bucket[k]
            if not bucket:
                del self._by_waypoint[wp]


def binding_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    """The labels that decide a Service's binding (R1, R6, Z16); the shared empty mapping when none."""
    kept = {sys.intern(k): v for k, v in labels.items() if k.startswith(USE_WAYPOINT) or k == INGRESS_USE_WAYPOINT}
    return kept or _EMPTY


class IndexView:
    """A :class:`~webhook.core.view.ClusterView` over an index; synced unless a backend says otherwise.

    The file view, the live view and the offline checker's growing state all read through it."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def synced(self) -> bool:
        return True

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        return self.index.namespace_labels(name)

    def gateway(self, namespace: str, name: str) -> WaypointInfo | None:
        return self.index.gateway(namespace, name)

    def class_waypoint_for(self, class_name: str) -> str | None:
        return self.index.class_waypoint_for(class_name)

    def namespace_annotations(self, name: str) -> Mapping[str, str]:
        return self.index.namespace_annotations(name)

    def gateway_class(self, class_name: str) -> ClassInfo | None:
        return self.index.gateway_class(class_name)

    def consumers_of(self, namespace: str, name: str) -> Sequence[ConsumerRef]:
        return self.index.consumers_of(namespace, name)

    def mesh_config(self) -> MeshConfig | None:
        return self.index.mesh

    def service_entries_of(self, namespace: str) -> Sequence[tuple[Key, ConsumerRef]]:
        return self.index.service_entries_of(namespace)

    def service_labels(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.index.service_labels(kind, namespace, name)

    def dependents_of(self, kind: str, namespace: str, name: str) -> Sequence[DependentRef]:
        return self.index.dependents_of(kind, namespace, name)

    def targeted_in(self, namespace: str) -> Sequence[tuple[str, str]]:
        return self.index.targeted_in(namespace)

    def gateways_of_class(self, class_name: str) -> Sequence[WaypointInfo]:
        return self.index.gateways_of_class(class_name)
