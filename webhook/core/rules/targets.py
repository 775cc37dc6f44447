"""Policy targets (docs/rules.md A7: Z1, Z3, Z7, Z11, Z12): whether each ``targetRefs`` entry can
apply anywhere, and whether what it names is served by a waypoint that applies it.

The severity principle of B1: a policy is never denied because of cluster state. Only a target
that can never apply anywhere is denied (``InvalidPolicyTarget``); a target that does not exist
yet, is not bound, or is bound to a gateway that never applies it is a warning, because creating
the policy must not be blocked and the binding may follow in the same apply.
"""

from __future__ import annotations

from webhook.core.dependents import (
    GATEWAY_API,
    POLICY_KINDS,
    SERVICE_KINDS,
    SUPPORTED_TARGETS,
    TargetRef,
    WaypointPolicy,
    target_problem,
)
from webhook.core.findings import Code, Finding
from webhook.core.model import ISTIO_WAYPOINT_CLASS, ROOT_NAMESPACE, quoted
from webhook.core.rules.context import Context
from webhook.core.rules.references import service_binding
from webhook.core.rules.rule import Rule, rule

MESH_CONTROLLER = "istio.io/mesh-controller"


def root_namespace(ctx: Context) -> str:
    mesh = ctx.view.mesh_config()
    return mesh.root_namespace if mesh is not None else ROOT_NAMESPACE


def _target_field(t: TargetRef) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """The user-facing field and the trigger (the whole targetRefs list: order and entries)."""
    return t.field, (("spec", "targetRefs"), ("spec", "targetRef"))


def _invalid(p: WaypointPolicy, t: TargetRef, why: str) -> Finding:
    field, triggers = _target_field(t)
    return Finding(Code.InvalidPolicyTarget, f"{p.display()}: target {t.display()} {why}", field, triggers)


def target_structure(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z1, Z7, Z12: what can never apply, read from the object alone (also a ValidatingAdmissionPolicy)."""
    out = []
    for t in p.targets:
        why = target_problem(p.kind, t)
        if why is not None:
            out.append(_invalid(p, t, why))
    return out


def target_class(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z3, Z7: a GatewayClass target applies only from the root namespace, to an Istio mesh class,
    and only the class named istio-waypoint (then to every Istio waypoint)."""
    out: list[Finding] = []
    for t in p.targets:
        if (t.group, t.kind) != (GATEWAY_API, "GatewayClass") or t.namespace:
            continue
        root = root_namespace(ctx)
        if p.namespace != root:
            out.append(_invalid(p, t, f"applies only from the root namespace {root}; move the policy there"))
            continue
        if not ctx.view.synced():
            continue
        info = ctx.view.gateway_class(t.name)
        if info is None:
            out.append(_not_found(p, t, f"GatewayClass {t.name}"))
        elif info.controller != MESH_CONTROLLER:
            out.append(_invalid(p, t, f"has controller {quoted(info.controller)}, not {MESH_CONTROLLER}"))
        elif t.name != ISTIO_WAYPOINT_CLASS:
            text = f"{p.display()}: GatewayClass {t.name} is not {ISTIO_WAYPOINT_CLASS}; waypoints apply only that class's policies"
            out.append(Finding(Code.PolicyTargetClassNotApplied, text, *_target_field(t)))
    return out


def _not_found(p: WaypointPolicy, t: TargetRef, what: str) -> Finding:
    text = f"{p.display()}: {what} not found; the policy applies nowhere until it exists"
    return Finding(Code.PolicyTargetNotFound, text, *_target_field(t))


def target_gateway(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z3, Z7: a Gateway target is the waypoint of that name in the policy's namespace; it applies
    once the Gateway has an address (its pods exist)."""
    out: list[Finding] = []
    if not ctx.view.synced():
        return out
    for t in p.targets:
        if (t.group, t.kind) != (GATEWAY_API, "Gateway") or t.namespace:
            continue
        gw = ctx.view.gateway(p.namespace, t.name)
        if gw is None:
            out.append(_not_found(p, t, f"Gateway {p.namespace}/{t.name}"))
        elif not gw.ready:
            text = f"{p.display()}: Gateway {p.namespace}/{t.name} has no address yet; nothing applies the policy until it has"
            out.append(Finding(Code.PolicyTargetNotBound, text, *_target_field(t)))
    return out


def target_service(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z3, Z7, Z11: a Service or ServiceEntry target applies only at the Istio waypoint it is bound
    to; istiod's status says why not in one word (AncestorNotBound), or even says Accepted."""
    out: list[Finding] = []
    if not ctx.view.synced():
        return out
    for t in p.targets:
        if (t.group, t.kind) not in SUPPORTED_TARGETS or t.kind not in SERVICE_KINDS or t.namespace:
            continue
        what = f"{t.kind} {p.namespace}/{t.name}"
        b = service_binding(t.kind, p.namespace, t.name, ctx)
        if b is None:
            out.append(_not_found(p, t, what))
        elif not b.bound:
            text = f"{p.display()}: {what} is bound to no waypoint ({b.why}); the policy is not enforced"
            out.append(Finding(Code.PolicyTargetNotBound, text, *_target_field(t)))
        elif not b.istio:
            text = f"{p.display()}: {what} is bound to {b.where}, not an Istio waypoint; Istio never applies the policy there"
            out.append(Finding(Code.PolicyTargetNotIstioWaypoint, text, *_target_field(t)))
    return out


_KINDS = POLICY_KINDS
TARGET_RULES: tuple[Rule[WaypointPolicy], ...] = (
    rule(target_structure, [Code.InvalidPolicyTarget], _KINDS, "Z1, Z7, Z12", stateless=True),
    rule(
        target_class,
        [Code.InvalidPolicyTarget, Code.PolicyTargetClassNotApplied, Code.PolicyTargetNotFound],
        _KINDS,
        "Z3, Z7",
    ),
    rule(target_gateway, [Code.PolicyTargetNotFound, Code.PolicyTargetNotBound], _KINDS, "Z3, Z7"),
    rule(
        target_service,
        [Code.PolicyTargetNotFound, Code.PolicyTargetNotBound, Code.PolicyTargetNotIstioWaypoint],
        _KINDS,
        "Z3, Z7, Z11",
    ),
)
