"""``explain``: the resolution of one object's waypoint as istiod walks it, one step per rule.

"Why does this Service not use my waypoint?" has, before the traffic answers it, no other tool.
Each :class:`Step` names its rule ID (docs/rules.md part 1) and whether it passed; the end says
which waypoint the data plane will use, or why none, and the finding codes the webhook reports
for the object as stored. The steps use the same helpers as the rules (attachment, traffic type,
waypoint classes, the consulted listener), so explain and the findings never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core.dependents import SERVICE_KINDS
from webhook.core.engine import Engine
from webhook.core.findings import Judged
from webhook.core.model import (
    CANARY_KINDS,
    CANARY_WEIGHT,
    DATAPLANE_MODE,
    NAMESPACE_ONLY,
    SERVICE,
    USE_WAYPOINT,
    USE_WAYPOINT_CANARY,
    USE_WAYPOINT_CANARY_NAMESPACE,
    USE_WAYPOINT_NAMESPACE,
    Consumer,
    binding_of,
    consulted_listener,
    parse_consumer,
)
from webhook.core.request import stored_request
from webhook.core.result import ObjectRef
from webhook.core.rules.context import Context
from webhook.core.rules.enforcement import Overlay
from webhook.core.rules.permissions import Attachment, attachment
from webhook.core.rules.references import service_binding, visibility_of
from webhook.core.rules.traffic import effective_waypoint_for
from webhook.core.stored import judge_stored
from webhook.core.view import DependentRef, WaypointInfo


@dataclass(frozen=True)
class Step:
    rule: str  # "R1", "W1", "P2-P4"…
    text: str
    ok: bool | None = None  # passed, failed, or only information

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text, "ok": self.ok}


@dataclass
class Explanation:
    ref: ObjectRef
    steps: list[Step] = field(default_factory=list)
    waypoint: str = ""  # namespace/name of the waypoint the data plane will use
    why_none: str = ""
    findings: tuple[Judged, ...] = ()

    def add(self, rule: str, text: str, ok: bool | None = None) -> None:
        self.steps.append(Step(rule, text, ok))

    def stop(self, why: str) -> Explanation:
        """No waypoint, for the first reason found; later steps still show what else would matter."""
        self.why_none = self.why_none or why
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "object": {"kind": self.ref.kind, "namespace": self.ref.namespace, "name": self.ref.name},
            "steps": [s.to_json() for s in self.steps],
            "waypoint": self.waypoint or None,
            "noWaypointBecause": self.why_none,
            "findings": [j.to_json() for j in self.findings],
        }

    def lines(self) -> list[str]:
        mark = {True: "ok  ", False: "FAIL", None: "    "}
        out = [f"{self.ref.display()}"]
        out += [f"  {mark[s.ok]} {s.rule:<5} {s.text}" for s in self.steps]
        out.append(f"=> waypoint: {self.waypoint}" if self.waypoint else f"=> no waypoint: {self.why_none}")
        out += [f"   {j.severity!s:<4} {j.code}: {j.message}" for j in self.findings]
        return out


def explain(obj: Mapping[str, Any], engine: Engine) -> Explanation:
    """Walk the resolution of ``obj`` (a stored consumer) against the engine's view."""
    ref = ObjectRef.of(obj)
    req = stored_request(obj, "explain")
    out = Explanation(ref, findings=judge_stored(engine, req) if req else ())
    ctx = engine.ctx.fresh()
    try:
        c = parse_consumer(ref.kind, obj, ref.namespace)
    except (ValueError, TypeError) as e:
        return out.stop(f"not judged: {e}")
    _walk(c, ctx, out)
    _dependents(c, ctx, out)
    return out


def _walk(c: Consumer, ctx: Context, out: Explanation) -> None:
    reference = _reference(c, ctx, out)
    if reference is None:
        return
    gw = _gateway(c, reference, ctx, out)
    if gw is None:
        return
    ns_labels = c.labels if c.kind == "Namespace" else ctx.view.namespace_labels(c.namespace)
    if not (
        _attached(c, gw, ns_labels, ctx, out) and _serves(c, gw, ctx, out) and _visible(c, gw, ns_labels, ctx, out)
    ):
        return
    _canary(c, ctx, out)
    _capture(c, ns_labels, out)
    if not out.why_none:
        out.waypoint = f"{gw.namespace}/{gw.name}"


def _dependents(c: Consumer, ctx: Context, out: Explanation) -> None:
    """Z3, Z9: the policies and routes that target a Service or ServiceEntry, and whether its
    binding lets a waypoint apply them (the object's own labels, as explained, over the view)."""
    if c.kind not in SERVICE_KINDS:
        return
    deps = sorted(ctx.view.dependents_of(c.kind, c.namespace, c.meta.name), key=DependentRef.order)
    if not deps:
        return
    target = (c.kind, c.namespace, c.meta.name)
    here = ctx.over(Overlay(ctx.view, services={target: c.labels}))
    b = service_binding(*target, here)
    if b is not None and b.bound and b.istio:
        verdict, ok = f"applies at waypoint {b.where}", True
    elif b is not None and b.bound:
        verdict, ok = f"never applies: {b.where} is not an Istio waypoint", False
    else:
        verdict, ok = f"does not apply: {b.why if b is not None else 'the object is not in the view'}", False
    for d in deps:
        out.add("Z9" if d.kind.endswith("Route") else "Z3", f"{d.display()} targets it: {verdict}", ok)


def _reference(c: Consumer, ctx: Context, out: Explanation) -> tuple[str, str] | None:
    """R1/R2, L1/L2: whose label counts, and which Gateway it names."""
    own = c.kind == "Namespace" or USE_WAYPOINT in c.labels
    labels = c.labels if own else ctx.view.namespace_labels(c.namespace)
    value = labels.get(USE_WAYPOINT)
    where = "its own label" if own else f"namespace {c.namespace}'s label (inherited)"
    if value is None:
        out.add("R1" if own else "R2", f"no {USE_WAYPOINT} on the object or its namespace", False)
        out.stop("nothing names a waypoint")
        return None
    out.add("R1" if own else "R2", f"{USE_WAYPOINT}={value!r}, from {where}", True)
    if value == "none":
        out.add("L1", "'none' opts out (and stops namespace inheritance)", False)
        out.stop("opted out with use-waypoint=none")
        return None
    namespace = labels.get(USE_WAYPOINT_NAMESPACE, c.namespace)
    source = f"{USE_WAYPOINT_NAMESPACE} on the same level" if USE_WAYPOINT_NAMESPACE in labels else "its own namespace"
    out.add("L2", f"the waypoint's namespace is {namespace!r} ({source})", None)
    return namespace, value


def _gateway(c: Consumer, ref: tuple[str, str], ctx: Context, out: Explanation) -> WaypointInfo | None:
    """W1, W2, W6: the Gateway, its class, its addresses."""
    gw = ctx.view.gateway(*ref)
    if gw is None:
        out.add("W1", f"Gateway {ref[0]}/{ref[1]} not found", False)
        out.stop(f"Gateway {ref[0]}/{ref[1]} does not exist")
        return None
    out.add("W1", f"Gateway {ref[0]}/{ref[1]} found", True)
    waypoint_class = ctx.is_waypoint_class(gw.class_name)
    sandwich = not waypoint_class and ctx.is_sandwich(gw)
    kind = (
        "a waypoint class"
        if waypoint_class
        else "no waypoint class, but a sandwich (W6)"
        if sandwich
        else "no waypoint class"
    )
    out.add("W2", f"class {gw.class_name!r}: {kind}", waypoint_class or sandwich)
    if not gw.ready:
        out.add("W1", "no status.addresses yet: not ready (the steps below apply once it is)", False)
        out.stop("the waypoint is not ready (no address yet): traffic bypasses it")
        return gw
    out.add("W1", "ready" + ("" if gw.usable else ", but no Hostname or IP address ztunnel can use"), gw.usable)
    if not gw.usable:
        out.stop("the waypoint has no address the data plane can use")
    return gw


def _attached(c: Consumer, gw: WaypointInfo, ns_labels: Mapping[str, str], ctx: Context, out: Explanation) -> bool:
    """P1-P4: the consulted listener and what its allowedRoutes admit."""
    info = ctx.view.gateway_class(gw.class_name)
    binding = binding_of(gw.inbound_binding, info.inbound_binding if info else None)
    listener, bound = consulted_listener(gw.listeners, binding)
    which = (
        f"listener {listener.name!r} ({listener.port}/{listener.protocol})"
        if listener
        else "no mesh listener: Same applies"
    )
    out.add("P1", which + (" selected by the inbound binding" if bound else ""), None)
    routes = listener.routes if listener else gw.routes(info.inbound_binding if info else None)
    verdict = attachment(routes, gw.namespace, c.namespace, ns_labels)
    ok = verdict is Attachment.ALLOWED
    out.add("P2-P4", f"allowedRoutes from {routes.from_}: namespace {c.namespace} is {verdict.name.lower()}", ok)
    if not ok:
        out.stop(f"the waypoint's allowedRoutes do not admit namespace {c.namespace}")
    return ok


def _serves(c: Consumer, gw: WaypointInfo, ctx: Context, out: Explanation) -> bool:
    """R3: the effective waypoint-for against the traffic this object needs served."""
    eff = effective_waypoint_for(gw.waypoint_for, ctx.view.class_waypoint_for(gw.class_name))
    ok = bool(c.traffic & eff.serves) if c.kind != "Namespace" else SERVICE in eff.serves
    need = " or ".join(sorted(c.traffic))
    out.add("R3", f"waypoint-for is {eff.raw!r}; this {c.kind} needs {need}", ok)
    if not ok:
        out.stop(f"the waypoint is for {eff.raw!r}, not {need} traffic")
    return ok


def _visible(c: Consumer, gw: WaypointInfo, ns_labels: Mapping[str, str], ctx: Context, out: Explanation) -> bool:
    """V1: a ServiceEntry of visibility NAMESPACE cannot bind a waypoint in another namespace."""
    if c.kind != "ServiceEntry":
        return True
    mesh = ctx.view.mesh_config()
    if mesh is None:
        out.add("V1", "MeshConfig unknown (--mesh-config): ServiceEntry visibility not checked", None)
        return True
    visibility = visibility_of(mesh, ns_labels) if mesh.visibility_set else "PUBLIC"
    ok = visibility != NAMESPACE_ONLY or gw.namespace == c.namespace
    out.add(
        "V1",
        f"visibility {visibility} (MeshConfig), waypoint in {'its own' if gw.namespace == c.namespace else 'another'} namespace",
        ok,
    )
    if not ok:
        out.stop("a ServiceEntry of visibility NAMESPACE cannot bind a waypoint in another namespace")
    return ok


def _canary(c: Consumer, ctx: Context, out: Explanation) -> None:
    """R6: a canary waypoint takes a share of the Service traffic."""
    if c.kind not in CANARY_KINDS:
        return
    own = c.kind == "Namespace" or USE_WAYPOINT_CANARY in c.labels
    labels = c.labels if own else ctx.view.namespace_labels(c.namespace)
    name = labels.get(USE_WAYPOINT_CANARY)
    if name is None or name == "none":
        out.add("R6", "no canary waypoint", None)
        return
    namespace = labels.get(USE_WAYPOINT_CANARY_NAMESPACE, c.namespace)
    weight_from = (
        c.meta.annotations
        if c.kind == "Namespace" or CANARY_WEIGHT in c.meta.annotations
        else ctx.view.namespace_annotations(c.namespace)
    )
    out.add("R6", f"canary {namespace}/{name} takes weight {weight_from.get(CANARY_WEIGHT, '0')!r} of 100", None)


def _capture(c: Consumer, ns_labels: Mapping[str, str], out: Explanation) -> None:
    """L5: a pod must be captured by ambient for any of it to matter."""
    if c.kind not in ("Pod", "Namespace"):
        return
    mode = c.labels.get(DATAPLANE_MODE) if c.kind == "Pod" else None
    ns_mode = ns_labels.get(DATAPLANE_MODE)
    captured = (mode == "ambient" or (ns_mode == "ambient" and mode != "none")) and not c.host_network
    out.add("L5", f"captured by ambient: {'yes' if captured else 'no'} (pod {mode!r}, namespace {ns_mode!r})", captured)
    if not captured and c.kind == "Pod":
        out.stop("the pod is not captured by ambient, so no waypoint applies")
