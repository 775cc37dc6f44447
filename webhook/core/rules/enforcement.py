"""What a change that unbinds a Service takes out of enforcement (docs/rules.md A7: Z14).

Removing a Service's ``use-waypoint``, relabelling its Namespace, deleting its waypoint or
changing the waypoint so that it no longer serves the Service: every policy and route that applies
only through that waypoint stops applying at once, and an AuthorizationPolicy a waypoint enforced
leaves the Service open (an L7 DENY stops denying, a targetRef ALLOW stops being the default
deny). istiod reports it only afterwards. ``PolicyEnforcementLost`` says so before, with the count
and two examples, fail-open ones first; a warning by default (unbinding must stay possible),
a denial under ``strict``.

Each rule compares the binding of the affected Services before and after the change, computed
by the same resolution as everything else (:func:`service_binding`) over the view with the
change laid on top (:class:`Overlay`). The affected Services are found through the reverse index
(policies and routes by target), so the cost is that of the objects targeting what changes,
never of the cluster.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

from webhook.core.dependents import SERVICE_KINDS
from webhook.core.findings import Code, Finding
from webhook.core.model import USE_WAYPOINT, WAYPOINT_FOR, Consumer, Gateway, GatewayClass, MeshConfig, label_field
from webhook.core.rules.context import Context, path_of
from webhook.core.rules.references import service_binding
from webhook.core.rules.rule import RuleTable, rule
from webhook.core.view import ClassInfo, ClusterView, ConsumerRef, DependentRef, WaypointInfo

EXAMPLES = 2
Target = tuple[str, str, str]  # (kind, namespace, name)


class Overlay:
    """The view with one change laid over it: a Gateway replaced or removed (None), a Namespace's
    or a Service's labels replaced. Everything else reads through."""

    def __init__(
        self,
        base: ClusterView,
        gateways: Mapping[tuple[str, str], WaypointInfo | None] | None = None,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        services: Mapping[Target, Mapping[str, str]] | None = None,
        classes: Mapping[str, ClassInfo | None] | None = None,
    ) -> None:
        self.base = base
        self.gateways, self.namespaces, self.services = gateways or {}, namespaces or {}, services or {}
        self.classes = classes or {}

    def synced(self) -> bool:
        return self.base.synced()

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        return self.namespaces[name] if name in self.namespaces else self.base.namespace_labels(name)

    def namespace_annotations(self, name: str) -> Mapping[str, str]:
        return self.base.namespace_annotations(name)

    def gateway(self, namespace: str, name: str) -> WaypointInfo | None:
        key = (namespace, name)
        return self.gateways[key] if key in self.gateways else self.base.gateway(namespace, name)

    def class_waypoint_for(self, class_name: str) -> str | None:
        if class_name in self.classes:
            info = self.classes[class_name]
            return info.waypoint_for if info is not None else None
        return self.base.class_waypoint_for(class_name)

    def gateway_class(self, class_name: str) -> ClassInfo | None:
        return self.classes[class_name] if class_name in self.classes else self.base.gateway_class(class_name)

    def consumers_of(self, namespace: str, name: str) -> Sequence[ConsumerRef]:
        return self.base.consumers_of(namespace, name)

    def service_entries_of(self, namespace: str) -> Sequence[tuple[tuple[str, str], ConsumerRef]]:
        return self.base.service_entries_of(namespace)

    def service_labels(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        key = (kind, namespace, name)
        return self.services[key] if key in self.services else self.base.service_labels(kind, namespace, name)

    def dependents_of(self, kind: str, namespace: str, name: str) -> Sequence[DependentRef]:
        return self.base.dependents_of(kind, namespace, name)

    def targeted_in(self, namespace: str) -> Sequence[tuple[str, str]]:
        return self.base.targeted_in(namespace)

    def gateways_of_class(self, class_name: str) -> Sequence[WaypointInfo]:
        return self.base.gateways_of_class(class_name)

    def mesh_config(self) -> MeshConfig | None:
        return self.base.mesh_config()


def _applies(target: Target, ctx: Context) -> bool:
    """Whether an Istio waypoint applies what targets this Service (Z3)."""
    b = service_binding(*target, ctx)
    return b is not None and b.bound and b.istio


def lost(targets: Iterable[Target], before: Context, after: Context) -> list[DependentRef]:
    """The policies and routes of the targets that an Istio waypoint applies before, not after."""
    out: list[DependentRef] = []
    for target in targets:
        deps = before.view.dependents_of(*target)
        if deps and _applies(target, before) and not _applies(target, after):
            out += deps
    return out


def _finding(subject: str, refs: Sequence[DependentRef], field: str, triggers: tuple[tuple[str, ...], ...]) -> Finding:
    shown = ", ".join(r.display() for r in heapq.nsmallest(EXAMPLES, refs, key=DependentRef.order))
    more = ", …" if len(refs) > EXAMPLES else ""
    open_ = sum(r.fail_open for r in refs)
    tail = f"; {open_} fail open, leaving the Service unprotected" if open_ else ""
    n = len(refs)
    text = f"{subject}: this change stops {n} polic{'ies' if n != 1 else 'y'} or route{'s' * (n != 1)} applying ({shown}{more}){tail}"
    return Finding(Code.PolicyEnforcementLost, text, field, triggers)


def service_unbinds(change: tuple[Consumer, Consumer], ctx: Context) -> list[Finding]:
    """Z14: a Service or ServiceEntry relabelled away from its waypoint."""
    old, new = change
    if not ctx.view.synced() or old.labels == new.labels:
        return []
    target = (new.kind, new.namespace, new.meta.name)
    before = ctx.over(Overlay(ctx.view, services={target: old.labels}))
    after = ctx.over(Overlay(ctx.view, services={target: new.labels}))
    refs = lost([target], before, after)
    if not refs:
        return []
    triggers = (path_of(new.meta.prefix, "labels"),)
    return [_finding(new.display(), refs, label_field(USE_WAYPOINT, new.meta.prefix), triggers)]


def namespace_unbinds(change: tuple[Consumer, Consumer], ctx: Context) -> list[Finding]:
    """Z14: a Namespace relabel that unbinds the Services inheriting its waypoint (V1 included)."""
    old, new = change
    if not ctx.view.synced() or old.labels == new.labels:
        return []
    ns = new.meta.name
    targets = [(kind, ns, name) for kind, name in ctx.view.targeted_in(ns)]
    before = ctx.over(Overlay(ctx.view, namespaces={ns: old.labels}))
    after = ctx.over(Overlay(ctx.view, namespaces={ns: new.labels}))
    refs = lost(targets, before, after)
    return [_finding(f"Namespace {ns}", refs, "metadata.labels", (("metadata", "labels"),))] if refs else []


def _served_by(namespace: str, name: str, ctx: Context) -> list[Target]:
    """The Services and ServiceEntries that may be bound to this waypoint: those naming it, and
    the targeted ones of the Namespaces naming it. O(its consumers + what they hold targeted)."""
    out: list[Target] = []
    for ref in ctx.view.consumers_of(namespace, name):
        if ref.kind in SERVICE_KINDS and not ref.detail:
            out.append((ref.kind, ref.namespace, ref.name))
        elif ref.kind == "Namespace":
            out += [(kind, ref.name, name) for kind, name in ctx.view.targeted_in(ref.name)]
    return out


def waypoint_deleted(gw: Gateway, ctx: Context) -> list[Finding]:
    """Z14: deleting a waypoint unbinds its Services and drops the policies targeting it."""
    if not ctx.view.synced():
        return []
    key = (gw.meta.namespace, gw.meta.name)
    after = ctx.over(Overlay(ctx.view, gateways={key: None}))
    refs = lost(_served_by(*key, ctx), ctx, after)
    current = ctx.view.gateway(*key)
    if current is not None and current.ready:
        refs += ctx.view.dependents_of("Gateway", *key)
    return [_finding(gw.meta.display("Gateway"), refs, "metadata.name", ())] if refs else []


def waypoint_changed(change: tuple[Gateway, Gateway], ctx: Context) -> list[Finding]:
    """Z14: an update that stops a waypoint serving its Services (waypoint-for, class, listeners,
    addresses)."""
    old, new = change
    if not ctx.view.synced():
        return []
    before_info, after_info = WaypointInfo.of(old), WaypointInfo.of(new)
    if before_info == after_info:
        return []
    key = (new.meta.namespace, new.meta.name)
    before = ctx.over(Overlay(ctx.view, gateways={key: before_info}))
    after = ctx.over(Overlay(ctx.view, gateways={key: after_info}))
    refs = lost(_served_by(*key, ctx), before, after)
    triggers = (("metadata", "labels"), ("spec",), ("status",))
    return [_finding(new.meta.display("Gateway"), refs, "spec", triggers)] if refs else []


def class_changed(change: tuple[GatewayClass, GatewayClass], ctx: Context) -> list[Finding]:
    """Z14: a GatewayClass's waypoint-for (the default of its Gateways without their own label) or
    controller changed so that its waypoints stop serving their Services. O(Gateways of the class
    + what they serve)."""
    old, new = change
    before_info = ClassInfo(old.waypoint_for, old.controller, old.inbound_binding)
    after_info = ClassInfo(new.waypoint_for, new.controller, new.inbound_binding)
    if not ctx.view.synced() or before_info == after_info:
        return []
    name = new.meta.name
    before = ctx.over(Overlay(ctx.view, classes={name: before_info}))
    after = ctx.over(Overlay(ctx.view, classes={name: after_info}))
    targets: list[Target] = []
    for gw in ctx.view.gateways_of_class(name):
        targets += _served_by(gw.namespace, gw.name, ctx)
    refs = lost(targets, before, after)
    return (
        [_finding(f"GatewayClass {name}", refs, label_field(WAYPOINT_FOR), (("metadata", "labels"), ("spec",)))]
        if refs
        else []
    )


_CODES = [Code.PolicyEnforcementLost]
_GW = frozenset({"Gateway"})
SERVICE_UPDATE_RULES: RuleTable[tuple[Consumer, Consumer]] = RuleTable(
    rule(service_unbinds, _CODES, SERVICE_KINDS, "Z14"),
)
NAMESPACE_ENFORCEMENT = rule(namespace_unbinds, _CODES, frozenset({"Namespace"}), "Z14")
GATEWAY_DELETE_ENFORCEMENT = rule(waypoint_deleted, _CODES, _GW, "Z14")
GATEWAY_UPDATE_ENFORCEMENT = rule(waypoint_changed, _CODES, _GW, "Z14")
CLASS_UPDATE_RULES: RuleTable[tuple[GatewayClass, GatewayClass]] = RuleTable(
    rule(class_changed, _CODES, frozenset({"GatewayClass"}), "Z14"),
)
