"""Routes with a Service or ServiceEntry parent, GAMMA (docs/rules.md A7: Z9, Z10).

istiod turns every such route into a mesh VirtualService and reports ``ResolvedWaypoints=True``
whenever a ``use-waypoint`` label merely exists on the parent or its namespace. In ambient only the
parent's waypoint applies the route, and only for a route in the parent's or the waypoint's
namespace; these rules say when that is not the case. All of them warn: sidecar clients still use
the route, and the binding may follow in the same apply.
"""

from __future__ import annotations

from webhook.core.dependents import ROUTE_KINDS, MeshRoute, ParentRef
from webhook.core.findings import Code, Finding
from webhook.core.model import DATAPLANE_MODE
from webhook.core.rules.context import Context
from webhook.core.rules.references import service_binding
from webhook.core.rules.rule import Rule, rule

# Z10: parents whose waypoint belongs to another controller get no parent status from istiod.
ISTIO_CONTROLLERS = frozenset({"istio.io/mesh-controller", "istio.io/gateway-controller"})
_PARENTS = (("spec", "parentRefs"),)


def _finding(code: Code, r: MeshRoute, p: ParentRef, text: str) -> Finding:
    return Finding(code, f"{r.display()}: {text}", p.field, _PARENTS)


def _parent(r: MeshRoute, p: ParentRef, ctx: Context) -> list[Finding]:
    what = f"{p.kind} {p.namespace}/{p.name}"
    b = service_binding(p.kind, p.namespace, p.name, ctx)
    if b is None:
        return [_finding(Code.RouteParentNotFound, r, p, f"parent {what} not found; the route applies to nothing")]
    if b.waypoint is None:
        if ctx.view.namespace_labels(p.namespace).get(DATAPLANE_MODE) != "ambient":
            return []  # sidecar or plain clients: not A7's
        return [
            _finding(
                Code.RouteParentNotBound,
                r,
                p,
                f"parent {what} is bound to no waypoint ({b.why}); ambient clients ignore the route",
            )
        ]
    info = ctx.view.gateway_class(b.waypoint.class_name)
    if info is not None and info.controller not in ISTIO_CONTROLLERS:
        text = f"parent {what}'s waypoint {b.where} has controller {info.controller}; istiod writes no status for it"
        return [_finding(Code.RouteParentOtherController, r, p, text)]
    if r.namespace not in (p.namespace, b.waypoint.namespace):
        text = f"the route is in neither {p.namespace} nor its waypoint's namespace {b.waypoint.namespace}; the waypoint ignores it"
        return [_finding(Code.RouteIgnoredByWaypoint, r, p, text)]
    return []


def route_parents(r: MeshRoute, ctx: Context) -> list[Finding]:
    """Z9, Z10: for each Service or ServiceEntry parent, whether a waypoint applies the route."""
    if not ctx.view.synced():
        return []
    out: list[Finding] = []
    for p in r.parents:
        out += _parent(r, p, ctx)
    return out


ROUTE_RULES: tuple[Rule[MeshRoute], ...] = (
    rule(
        route_parents,
        [
            Code.RouteParentNotFound,
            Code.RouteParentNotBound,
            Code.RouteParentOtherController,
            Code.RouteIgnoredByWaypoint,
        ],
        ROUTE_KINDS,
        "Z9, Z10",
    ),
)
