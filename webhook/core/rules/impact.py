"""What a Gateway DELETE or UPDATE does to the objects bound to it (B1: WaypointInUse,
ConsumersWouldBreak), and a Namespace relabel to its ServiceEntries' visibility (V1). A Gateway's
cost is O(consumers of that waypoint), never O(cluster)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from webhook.core.findings import Code, Finding
from webhook.core.model import NAMESPACE_ONLY, WAYPOINT_FOR, AllowedRoutes, Consumer, Gateway, label_field
from webhook.core.rules.context import Context
from webhook.core.rules.permissions import Attachment, attachment
from webhook.core.rules.references import visibility_of
from webhook.core.rules.rule import RuleTable, rule
from webhook.core.rules.traffic import effective_waypoint_for
from webhook.core.view import ConsumerRef

EXAMPLES = 2


def _examples(refs: Sequence[ConsumerRef]) -> str:
    """The first two in a stable order, without sorting all of them."""
    shown = ", ".join(r.display() for r in heapq.nsmallest(EXAMPLES, refs, key=ConsumerRef.order))
    return f"{shown}, …" if len(refs) > EXAMPLES else shown


def _unsynced(gw: Gateway, action: str) -> Finding:
    return Finding(
        Code.StateUnavailable,
        f"{gw.meta.display('Gateway')}: cluster state not synced; consumers were not checked before {action}",
        "metadata.name",
    )


def waypoint_in_use(gw: Gateway, ctx: Context) -> list[Finding]:
    """DELETE of a waypoint that objects still name; StateUnavailable when they cannot be known."""
    if not ctx.view.synced():
        return [_unsynced(gw, "delete")]
    refs = ctx.view.consumers_of(gw.meta.namespace, gw.meta.name)
    if not refs:
        return []
    n = len(refs)
    return [
        Finding(
            Code.WaypointInUse,
            f"{gw.meta.display('Gateway')} is used by {n} object{'s' * (n != 1)} ({_examples(refs)}); relabel them first",
            "metadata.name",
        )
    ]


def _binding(
    gw: Gateway, class_label: str | None, routes: AllowedRoutes, ref: ConsumerRef, ns_labels: dict[str, str]
) -> frozenset[str]:
    """The traffic ``ref`` gets from ``gw``: empty when attachment is refused (P1-P4, R3)."""
    if attachment(routes, gw.meta.namespace, ref.namespace, ns_labels) is not Attachment.ALLOWED:
        return frozenset()
    return ref.traffic & effective_waypoint_for(gw.waypoint_for, class_label).serves


def _class_binding(ctx: Context, class_name: str) -> str | None:
    info = ctx.view.gateway_class(class_name)
    return info.inbound_binding if info is not None else None


def consumers_would_break(change: tuple[Gateway, Gateway], ctx: Context) -> list[Finding]:
    """UPDATE of a waypoint: its waypoint-for, its class, or the listener P1 consults (its
    allowedRoutes, or which listener an inbound binding selects) changed so that objects bound
    to it today would not be."""
    old, new = change
    old_routes = old.routes(_class_binding(ctx, old.class_name))
    new_routes = new.routes(_class_binding(ctx, new.class_name))
    if (old.waypoint_for, old_routes, old.class_name) == (new.waypoint_for, new_routes, new.class_name):
        return []
    if not ctx.view.synced():
        return [_unsynced(new, "this update")]
    view = ctx.view
    old_class, new_class = view.class_waypoint_for(old.class_name), view.class_waypoint_for(new.class_name)
    broken: list[ConsumerRef] = []
    for ref in view.consumers_of(new.meta.namespace, new.meta.name):
        labels = dict(view.namespace_labels(ref.namespace))
        before = _binding(old, old_class, old_routes, ref, labels)
        after = _binding(new, new_class, new_routes, ref, labels)
        if before and not before <= after:
            broken.append(ref)
    if not broken:
        return []
    n = len(broken)
    field = label_field(WAYPOINT_FOR) if old.waypoint_for != new.waypoint_for else "spec.listeners"
    return [
        Finding(
            Code.ConsumersWouldBreak,
            f"{new.meta.display('Gateway')}: this change unbinds {n} object{'s' * (n != 1)} ({_examples(broken)})",
            field,
            (("metadata", "labels", WAYPOINT_FOR), ("spec", "listeners"), ("spec", "gatewayClassName")),
        )
    ]


def visibility_would_break(change: tuple[Consumer, Consumer], ctx: Context) -> list[Finding]:
    """V1: a Namespace relabel that turns its ServiceEntries' visibility (MeshConfig
    serviceEntryVisibility) to NAMESPACE unbinds every one whose waypoint is in another namespace."""
    old, new = change
    mesh = ctx.view.mesh_config()
    if mesh is None or not mesh.visibility_set or old.labels == new.labels:
        return []
    if visibility_of(mesh, new.labels) != NAMESPACE_ONLY or visibility_of(mesh, old.labels) == NAMESPACE_ONLY:
        return []
    broken = [ref for target, ref in ctx.view.service_entries_of(new.meta.name) if target[0] != new.meta.name]
    if not broken:
        return []
    n = len(broken)
    text = (
        f"Namespace {new.meta.name}: with these labels its ServiceEntries' visibility becomes NAMESPACE "
        f"(MeshConfig), which unbinds {n} from waypoints in other namespaces ({_examples(broken)})"
    )
    return [Finding(Code.ConsumersWouldBreak, text, "metadata.labels", (("metadata", "labels"),))]


_GW = frozenset({"Gateway"})
# Request-level rules: what a Gateway's DELETE, or an UPDATE (old, new), does to its consumers.
DELETE_RULES: RuleTable[Gateway] = RuleTable(
    rule(waypoint_in_use, [Code.WaypointInUse, Code.StateUnavailable], _GW, "B1"),
)
NAMESPACE_UPDATE_RULES: RuleTable[tuple[Consumer, Consumer]] = RuleTable(
    rule(visibility_would_break, [Code.ConsumersWouldBreak], frozenset({"Namespace"}), "V1, B1"),
)
UPDATE_RULES: RuleTable[tuple[Gateway, Gateway]] = RuleTable(
    rule(consumers_would_break, [Code.ConsumersWouldBreak, Code.StateUnavailable], _GW, "B1, L3, P1"),
)
