"""Gateway and GatewayClass findings (docs/rules.md W2-W5, L3, P3; B1 gateway table)."""

from __future__ import annotations

from webhook.core.findings import Code, Finding
from webhook.core.model import (
    DATAPLANE_MODE,
    INBOUND_BINDING,
    MESH_PORT,
    MESH_PROTOCOL,
    NAME_OVERRIDE,
    SIDECAR_INJECT,
    WAYPOINT_FOR,
    WAYPOINT_FOR_VALUES,
    Gateway,
    GatewayClass,
    Listener,
    is_dns1035_label,
    label_field,
    parse_inbound_binding,
    quoted,
)
from webhook.core.rules.context import Context
from webhook.core.rules.permissions import routes_problem
from webhook.core.rules.rule import RuleTable, rule
from webhook.core.rules.traffic import effective_waypoint_for

LABELS_WAYPOINT_FOR = ("metadata", "labels", WAYPOINT_FOR)
LISTENERS = ("spec", "listeners")
MAX_LABEL_VALUE = 63  # W2: a Kubernetes label value


def in_scope(gw: Gateway, ctx: Context) -> bool:
    """B1: Gateways of a waypoint class (W2), or any Gateway carrying ``istio.io/waypoint-for`` or
    an inbound binding (a sandwich, W6)."""
    return ctx.is_waypoint_class(gw.class_name) or WAYPOINT_FOR in gw.meta.labels or gw.inbound_binding is not None


def _invalid_waypoint_for(value: str, what: str) -> Finding:
    return Finding(
        Code.InvalidWaypointFor,
        f"{what}: waypoint-for {quoted(value)} is not one of service, workload, all, none (istiod treats it as none)",
        label_field(WAYPOINT_FOR),
        (LABELS_WAYPOINT_FOR,),
    )


def _mesh_hint(listeners: tuple[Listener, ...]) -> str:
    for lis in listeners:
        if lis.port == MESH_PORT and (lis.protocol or "").upper() == MESH_PROTOCOL:
            return f"; protocol must be HBONE, not {quoted(lis.protocol)}"
        if lis.protocol == MESH_PROTOCOL:
            return f"; HBONE listener must use port 15008, not {lis.port}"
    return ""


def _binding_findings(value: str | None, what: str, field_prefix: str = "metadata") -> list[Finding]:
    """InvalidInboundBinding: istiod only logs a malformed binding and binds as P1 says."""
    if value is None:
        return []
    _, problem = parse_inbound_binding(value)
    if problem is None:
        return []
    return [
        Finding(
            Code.InvalidInboundBinding,
            f"{what}: {INBOUND_BINDING} {problem}",
            f"{field_prefix}.annotations[{INBOUND_BINDING}]",
            (("metadata", "annotations", INBOUND_BINDING),),
        )
    ]


def _what(gw: Gateway) -> str:
    return gw.meta.display("Gateway")


def _consulted(gw: Gateway, ctx: Context) -> tuple[Listener | None, bool, str | None]:
    """P1: the listener istiod consults, whether a binding selected it, and the class's binding."""
    class_info = ctx.view.gateway_class(gw.class_name)
    class_binding = class_info.inbound_binding if class_info is not None else None
    consulted, bound = gw.consulted(class_binding)
    return consulted, bound, class_binding


# --- Gateway rules, in the order their findings are reported ---------------------------------


def waypoint_for_value(gw: Gateway, ctx: Context) -> list[Finding]:
    own = gw.waypoint_for
    return [_invalid_waypoint_for(own, _what(gw))] if own is not None and own not in WAYPOINT_FOR_VALUES else []


def inbound_binding_syntax(gw: Gateway, ctx: Context) -> list[Finding]:
    return _binding_findings(gw.inbound_binding, _what(gw))


def inbound_binding_match(gw: Gateway, ctx: Context) -> list[Finding]:
    """P1: a valid binding that selects no listener leaves the HBONE listener's allowedRoutes in force."""
    _, bound, class_binding = _consulted(gw, ctx)
    value = gw.inbound_binding if gw.inbound_binding is not None else class_binding
    binding, problem = parse_inbound_binding(value) if value is not None else (None, None)
    if binding is None or problem is not None or bound or not (binding.port or binding.protocol == "PROXY"):
        return []  # none, invalid (InvalidInboundBinding says so), or it selected its listener
    source = "its" if gw.inbound_binding is not None else f"GatewayClass {gw.class_name}'s"
    return [
        Finding(
            Code.InboundBindingUnmatched,
            f"{_what(gw)}: {source} inbound binding selects no listener, so the HBONE listener's allowedRoutes apply",
            f"metadata.annotations[{INBOUND_BINDING}]" if gw.inbound_binding is not None else "spec.listeners",
            (("metadata", "annotations", INBOUND_BINDING), LISTENERS),
        )
    ]


def waypoint_name(gw: Gateway, ctx: Context) -> list[Finding]:
    """W2: istiod names a managed waypoint's Deployment and Service after the name-override
    annotation when set, else after the Gateway, and writes the Gateway's and its class's names
    as label values on everything it deploys (≤63 characters each, even with an override). A
    Gateway whose spec.addresses make it unmanaged is deployed by nobody: no naming rule applies."""
    if not ctx.is_waypoint_class(gw.class_name) or not gw.managed:
        return []
    for what, value, field in (
        ("name", gw.meta.name, "metadata.name"),
        ("class name", gw.class_name, "spec.gatewayClassName"),
    ):
        if len(value) > MAX_LABEL_VALUE:
            text = f"{_what(gw)}: its {what} has {len(value)} characters; istiod writes it as a label value (≤63), so the waypoint never deploys"
            return [Finding(Code.InvalidWaypointName, text, field, ((*field.split("."),),))]
    name = gw.deployed_name
    overridden = NAME_OVERRIDE in gw.meta.annotations
    if not (name or overridden) or (name != "none" and is_dns1035_label(name)):
        return []
    why = "'none' is reserved" if name == "none" else "it must be a DNS-1035 label (a-z, 0-9, '-', ≤63)"
    source = f"annotation {NAME_OVERRIDE}" if overridden else "name"
    return [
        Finding(
            Code.InvalidWaypointName,
            f"{_what(gw)}: {source} {quoted(name)} cannot name the waypoint's Deployment: {why}",
            f"metadata.annotations[{NAME_OVERRIDE}]" if overridden else "metadata.name",
            (("metadata", "annotations", NAME_OVERRIDE),) if overridden else (("metadata", "name"),),
        )
    ]


def listener_sets(gw: Gateway, ctx: Context) -> list[Finding]:
    """G1: waypoint classes do not support ListenerSets; a listener attached through one never
    serves the waypoint and never grants cross-namespace permission (P1 reads spec.listeners)."""
    if not ctx.is_waypoint_class(gw.class_name) or not gw.allowed_listeners:
        return []
    text = f"{_what(gw)}: spec.allowedListeners is set, but listeners from ListenerSets never serve a waypoint"
    return [Finding(Code.ListenerSetOnWaypoint, text, "spec.allowedListeners", (("spec", "allowedListeners"),))]


def mesh_listener(gw: Gateway, ctx: Context) -> list[Finding]:
    """W3: a waypoint needs its 15008/HBONE listener."""
    if not ctx.is_waypoint_class(gw.class_name) or gw.mesh_listener() is not None:
        return []
    return [
        Finding(
            Code.MissingMeshListener,
            f"{_what(gw)}: add listener {{name: mesh, port: 15008, protocol: HBONE}}{_mesh_hint(gw.listeners)}",
            "spec.listeners",
            (LISTENERS,),
        )
    ]


def unexpected_listeners(gw: Gateway, ctx: Context) -> list[Finding]:
    """W3: istiod rejects other listeners on a waypoint, except the one an inbound binding selects."""
    if not ctx.is_waypoint_class(gw.class_name):
        return []
    consulted, bound, _ = _consulted(gw, ctx)
    return [
        Finding(
            Code.UnexpectedListener,
            f"{_what(gw)}: listener {quoted(lis.name)} ({lis.port}/{lis.protocol}) is not 15008/HBONE; istiod rejects it",
            lis.path,
            (LISTENERS,),
        )
        for lis in gw.listeners
        if not lis.is_mesh and not (bound and lis is consulted)
    ]


def allowed_routes(gw: Gateway, ctx: Context) -> list[Finding]:
    """P1/P3: only the consulted listener's allowedRoutes count."""
    consulted, bound, _ = _consulted(gw, ctx)
    problem = routes_problem(consulted.routes) if consulted is not None else None
    if consulted is None or not problem:
        return []
    which = "bound listener" if bound else "mesh listener"
    return [
        Finding(
            Code.InvalidAllowedRoutes,
            f"{_what(gw)}: {which} allowedRoutes: {problem}",
            f"{consulted.path}.allowedRoutes.namespaces",
            (LISTENERS, ("metadata", "annotations", INBOUND_BINDING)),
        )
    ]


def accepts_traffic(gw: Gateway, ctx: Context) -> list[Finding]:
    """L3: an illegal own label is InvalidWaypointFor already; without a label the class decides,
    which needs synced state."""
    own = gw.waypoint_for
    if not (own in WAYPOINT_FOR_VALUES or (own is None and ctx.view.synced())):
        return []
    eff = effective_waypoint_for(own, ctx.view.class_waypoint_for(gw.class_name) if own is None else None)
    if eff.serves:
        return []
    source = "its label" if eff.source == "gateway" else f"GatewayClass {gw.class_name}"
    return [
        Finding(
            Code.WaypointAcceptsNoTraffic,
            f"{_what(gw)}: waypoint-for {quoted(eff.raw)} (from {source}) accepts no traffic; use service, workload or all",
            label_field(WAYPOINT_FOR),
            (LABELS_WAYPOINT_FOR,),
        )
    ]


def pod_label_override(gw: Gateway, ctx: Context) -> list[Finding]:
    """W5: only a waypoint class's own pods must stay out of the mesh; a sandwich Gateway of
    another class is in ambient on purpose (W6). The copied labels are spec.infrastructure.labels
    when set."""
    if not ctx.is_waypoint_class(gw.class_name):
        return []
    prefix = "spec.infrastructure" if gw.infrastructure_labels is not None else "metadata"
    return [
        Finding(
            Code.WaypointPodLabelOverride,
            f"{_what(gw)}: label {key} is copied to the waypoint's pods and breaks them; remove it",
            label_field(key, prefix),
            ((*prefix.split("."), "labels", key),),
        )
        for key in (DATAPLANE_MODE, SIDECAR_INJECT)
        if key in gw.copied_labels
    ]


# --- GatewayClass rules -------------------------------------------------------------------------


def class_waypoint_for_value(gc: GatewayClass, ctx: Context) -> list[Finding]:
    value = gc.waypoint_for
    if value is None or value in WAYPOINT_FOR_VALUES:
        return []
    return [_invalid_waypoint_for(value, gc.meta.display("GatewayClass"))]


def class_inbound_binding_syntax(gc: GatewayClass, ctx: Context) -> list[Finding]:
    return _binding_findings(gc.inbound_binding, gc.meta.display("GatewayClass"))


_GW, _GC = frozenset({"Gateway"}), frozenset({"GatewayClass"})
GATEWAY_RULES: RuleTable[Gateway] = RuleTable(
    rule(waypoint_for_value, [Code.InvalidWaypointFor], _GW, "L3", stateless=True),
    rule(inbound_binding_syntax, [Code.InvalidInboundBinding], _GW, "P1", stateless=True),
    rule(inbound_binding_match, [Code.InboundBindingUnmatched], _GW, "P1"),
    rule(waypoint_name, [Code.InvalidWaypointName], _GW, "W2", stateless=True),
    rule(mesh_listener, [Code.MissingMeshListener], _GW, "W3", stateless=True),
    rule(unexpected_listeners, [Code.UnexpectedListener], _GW, "W3, P1"),
    rule(allowed_routes, [Code.InvalidAllowedRoutes], _GW, "P1, P3"),
    rule(accepts_traffic, [Code.WaypointAcceptsNoTraffic], _GW, "L3"),
    rule(listener_sets, [Code.ListenerSetOnWaypoint], _GW, "G1"),
    rule(pod_label_override, [Code.WaypointPodLabelOverride], _GW, "W5, W6"),
)
CLASS_RULES: RuleTable[GatewayClass] = RuleTable(
    rule(class_waypoint_for_value, [Code.InvalidWaypointFor], _GC, "L3", stateless=True),
    rule(class_inbound_binding_syntax, [Code.InvalidInboundBinding], _GC, "P1", stateless=True),
)
