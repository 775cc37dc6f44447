"""Gateway and GatewayClass findings (docs/rules.md W2-W5, L3, P3; B1 gateway table)."""

from __future__ import annotations

from webhook.findings import Finding
from webhook.model import (
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
    binding_of,
    is_dns1035_label,
    label_field,
    parse_inbound_binding,
    quoted,
)
from webhook.rules.context import Context
from webhook.rules.permissions import routes_problem
from webhook.rules.traffic import effective_waypoint_for

LABELS_WAYPOINT_FOR = ("metadata", "labels", WAYPOINT_FOR)
LISTENERS = ("spec", "listeners")


def in_scope(gw: Gateway, ctx: Context) -> bool:
    """B1: Gateways of a waypoint class (W2), or any Gateway carrying ``istio.io/waypoint-for`` or
    an inbound binding (a sandwich, W6)."""
    return ctx.is_waypoint_class(gw.class_name) or WAYPOINT_FOR in gw.meta.labels or gw.inbound_binding is not None


def _invalid_waypoint_for(value: str, what: str) -> Finding:
    return Finding(
        "InvalidWaypointFor",
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
            "InvalidInboundBinding",
            f"{what}: {INBOUND_BINDING} {problem}",
            f"{field_prefix}.annotations[{INBOUND_BINDING}]",
            (("metadata", "annotations", INBOUND_BINDING),),
        )
    ]


def judge_gateway(gw: Gateway, ctx: Context) -> list[Finding]:
    if not in_scope(gw, ctx):
        return []
    out: list[Finding] = []
    what = gw.meta.display("Gateway")
    own = gw.waypoint_for
    if own is not None and own not in WAYPOINT_FOR_VALUES:
        out.append(_invalid_waypoint_for(own, what))
    out += _binding_findings(gw.inbound_binding, what)
    class_info = ctx.view.gateway_class(gw.class_name)
    class_binding = class_info.inbound_binding if class_info is not None else None
    consulted, bound = gw.consulted(class_binding)  # P1
    binding = binding_of(gw.inbound_binding, class_binding)
    if binding is not None and not bound and (binding.port or binding.protocol == "PROXY"):
        source = "its" if gw.inbound_binding is not None else f"GatewayClass {gw.class_name}'s"
        out.append(
            Finding(
                "InboundBindingUnmatched",
                f"{what}: {source} inbound binding selects no listener, so the HBONE listener's allowedRoutes apply",
                f"metadata.annotations[{INBOUND_BINDING}]" if gw.inbound_binding is not None else "spec.listeners",
                (("metadata", "annotations", INBOUND_BINDING), LISTENERS),
            )
        )

    waypoint_class = ctx.is_waypoint_class(gw.class_name)
    if waypoint_class:
        # W2: Istio names the waypoint's Deployment and Service after the name-override
        # annotation when set, else after the Gateway.
        name = gw.deployed_name
        overridden = NAME_OVERRIDE in gw.meta.annotations
        if (name or overridden) and (name == "none" or not is_dns1035_label(name)):
            why = "'none' is reserved" if name == "none" else "it must be a DNS-1035 label (a-z, 0-9, '-', ≤63)"
            source = f"annotation {NAME_OVERRIDE}" if overridden else "name"
            out.append(
                Finding(
                    "InvalidWaypointName",
                    f"{what}: {source} {quoted(name)} cannot name the waypoint's Deployment: {why}",
                    f"metadata.annotations[{NAME_OVERRIDE}]" if overridden else "metadata.name",
                    (("metadata", "annotations", NAME_OVERRIDE),) if overridden else (("metadata", "name"),),
                )
            )
        mesh = gw.mesh_listener()
        if mesh is None:
            out.append(
                Finding(
                    "MissingMeshListener",
                    f"{what}: add listener {{name: mesh, port: 15008, protocol: HBONE}}{_mesh_hint(gw.listeners)}",
                    "spec.listeners",
                    (LISTENERS,),
                )
            )
        for lis in gw.listeners:
            if not lis.is_mesh and not (bound and lis is consulted):  # a bound listener is expected
                out.append(
                    Finding(
                        "UnexpectedListener",
                        f"{what}: listener {quoted(lis.name)} ({lis.port}/{lis.protocol}) is not 15008/HBONE; istiod rejects it",
                        lis.path,
                        (LISTENERS,),
                    )
                )

    if consulted is not None:  # P1/P3: only the consulted listener's allowedRoutes count
        problem = routes_problem(consulted.routes)
        if problem:
            which = "bound listener" if bound else "mesh listener"
            out.append(
                Finding(
                    "InvalidAllowedRoutes",
                    f"{what}: {which} allowedRoutes: {problem}",
                    f"{consulted.path}.allowedRoutes.namespaces",
                    (LISTENERS, ("metadata", "annotations", INBOUND_BINDING)),
                )
            )

    # L3: an illegal own label is InvalidWaypointFor already; without a label the class decides,
    # which needs synced state.
    knowable = own in WAYPOINT_FOR_VALUES or (own is None and ctx.view.synced())
    if knowable:
        eff = effective_waypoint_for(own, ctx.view.class_waypoint_for(gw.class_name) if own is None else None)
        if not eff.serves:
            source = "its label" if eff.source == "gateway" else f"GatewayClass {gw.class_name}"
            out.append(
                Finding(
                    "WaypointAcceptsNoTraffic",
                    f"{what}: waypoint-for {quoted(eff.raw)} (from {source}) accepts no traffic; use service, workload or all",
                    label_field(WAYPOINT_FOR),
                    (LABELS_WAYPOINT_FOR,),
                )
            )

    # W5: only a waypoint class's own pods must stay out of the mesh; a sandwich Gateway of another
    # class is in ambient on purpose (W6). The copied labels are spec.infrastructure.labels when set.
    infra = gw.infrastructure_labels is not None
    for key in (DATAPLANE_MODE, SIDECAR_INJECT) if waypoint_class else ():
        if key in gw.copied_labels:
            prefix = "spec.infrastructure" if infra else "metadata"
            out.append(
                Finding(
                    "WaypointPodLabelOverride",
                    f"{what}: label {key} is copied to the waypoint's pods and breaks them; remove it",
                    label_field(key, prefix),
                    ((*prefix.split("."), "labels", key),),
                )
            )
    return out


def judge_gateway_class(gc: GatewayClass, ctx: Context) -> list[Finding]:
    value = gc.waypoint_for
    what = gc.meta.display("GatewayClass")
    out = _binding_findings(gc.inbound_binding, what)
    if value is not None and value not in WAYPOINT_FOR_VALUES:
        out.insert(0, _invalid_waypoint_for(value, what))
    return out
