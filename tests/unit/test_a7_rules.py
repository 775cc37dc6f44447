"""SPEC A7, table-driven: policies and routes that need a waypoint (Z1-Z5, Z7, Z9-Z12). Each case
names its Z rule; the expected findings are {code: severity} under the default preset.

The cluster: namespace ``l7`` in ambient with waypoint ``wp`` (for service) and ``wl`` (for
workload), Services bound in every way A3 allows and fails, a sandwich-free third-party waypoint,
and istio-system as the root namespace.
"""

from __future__ import annotations

from typing import Any

import pytest

from testkit.builders import (
    consumer,
    engine,
    gateway,
    gateway_class,
    judge,
    namespace,
    policy,
    request,
    route,
    service_parent,
    state,
    target,
)
from webhook.core.model import Malformed

UW = "istio.io/use-waypoint"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}
HTTP_ONLY_DENY: dict[str, Any] = {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}


def svc(name: str, ns: str = "l7", **labels: str) -> dict[str, Any]:
    return consumer("Service", name, ns, labels or None, spec={"ports": [{"port": 9080}]})


STATE = state(
    namespace("l7", **AMBIENT),
    namespace("inherit", **AMBIENT, **{UW: "shared", "istio.io/use-waypoint-namespace": "l7"}),
    namespace("foreign", **AMBIENT, **{UW: "wp", "istio.io/use-waypoint-namespace": "l7"}),
    namespace("sidecars", **{"istio-injection": "enabled"}),
    namespace("istio-system"),
    gateway_class("istio-waypoint"),
    gateway_class("team-waypoint"),  # a platform team's own mesh-controller class
    gateway_class("other-mesh", controller="example.com/mesh"),
    gateway_class("istio", controller="istio.io/gateway-controller"),
    gateway("wp", "l7"),
    gateway("wl", "l7", labels={"istio.io/waypoint-for": "workload"}),
    gateway("pending", "l7", ready=False),
    gateway("shared", "l7", routes={"from": "All"}),
    gateway("vendor", "l7", cls="other-mesh"),
    svc("reviews", **{UW: "wp"}),
    svc("unlabelled"),
    svc("optout", **{UW: "none"}),
    svc("typo", **{UW: "None"}),
    svc("to-missing", **{UW: "ghost"}),
    svc("to-pending", **{UW: "pending"}),
    svc("to-workload", **{UW: "wl"}),
    svc("to-vendor", **{UW: "vendor"}),
    svc("inherited", "inherit"),
    svc("refused", "foreign"),
    svc("web", "sidecars"),
    consumer("ServiceEntry", "api", "l7", {UW: "wp"}, spec={"hosts": ["api.example.com"]}),
)

POLICY_CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    # Z1, Z7, Z12: InvalidPolicyTarget, the one deny (never because of cluster state)
    ("Z1 a bound Service target applies", policy(ns="l7", targetRefs=[target("Service", "reviews")]), {}),
    ("Z1 group core is the Service's too", policy(ns="l7", targetRefs=[target("Service", "reviews", "core")]), {}),
    ("Z1/Z7 kind Service with group networking.istio.io never applies (istiod says Accepted)", policy(ns="l7", targetRefs=[target("Service", "reviews", "networking.istio.io")]), {"InvalidPolicyTarget": "deny"}),
    ("Z1 a Deployment is no target", policy(ns="l7", targetRefs=[{"group": "apps", "kind": "Deployment", "name": "x"}]), {"InvalidPolicyTarget": "deny"}),
    ("Z1 a Gateway of group '' is no target", policy(ns="l7", targetRefs=[target("Gateway", "wp", "")]), {"InvalidPolicyTarget": "deny"}),
    ("Z1 targetRefs[].namespace must be empty", policy(ns="l7", targetRefs=[{**target("Service", "reviews"), "namespace": "l7"}]), {"InvalidPolicyTarget": "deny"}),
    ("Z1 the singular targetRef counts when targetRefs is empty", policy(ns="l7", targetRef=target("Service", "reviews", "networking.istio.io")), {"InvalidPolicyTarget": "deny"}),
    ("Z12 an EnvoyFilter Service target never applies", policy("EnvoyFilter", ns="l7", targetRefs=[target("Service", "reviews")]), {"InvalidPolicyTarget": "deny"}),
    ("Z12 an EnvoyFilter Gateway target applies", policy("EnvoyFilter", ns="l7", targetRefs=[target("Gateway", "wp")]), {}),
    # Z3, Z7: GatewayClass targets
    ("Z3 GatewayClass istio-waypoint from the root namespace applies to every waypoint", policy(ns="istio-system", targetRefs=[target("GatewayClass", "istio-waypoint")]), {}),
    ("Z3/Z7 a GatewayClass target outside the root namespace is Invalid", policy(ns="l7", targetRefs=[target("GatewayClass", "istio-waypoint")]), {"InvalidPolicyTarget": "deny"}),
    ("Z7 a class whose controller is not the mesh controller is Invalid", policy(ns="istio-system", targetRefs=[target("GatewayClass", "other-mesh")]), {"InvalidPolicyTarget": "deny"}),
    ("Z3 a mesh-controller class not named istio-waypoint is never applied", policy(ns="istio-system", targetRefs=[target("GatewayClass", "team-waypoint")]), {"PolicyTargetClassNotApplied": "warn"}),
    ("Z7 a missing class is not found", policy(ns="istio-system", targetRefs=[target("GatewayClass", "nope")]), {"PolicyTargetNotFound": "warn"}),
    # Z3, Z7: Gateway targets
    ("Z3 a ready Gateway target applies", policy(ns="l7", targetRefs=[target("Gateway", "wp")]), {}),
    ("Z7 a Gateway target without addresses is not bound", policy(ns="l7", targetRefs=[target("Gateway", "pending")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 a missing Gateway target", policy(ns="l7", targetRefs=[target("Gateway", "ghost")]), {"PolicyTargetNotFound": "warn"}),
    # Z3, Z7, Z11: Service and ServiceEntry targets, with the cause istiod drops
    ("Z7 a missing Service target", policy(ns="l7", targetRefs=[target("Service", "nope")]), {"PolicyTargetNotFound": "warn"}),
    ("Z7 no use-waypoint: not bound", policy(ns="l7", targetRefs=[target("Service", "unlabelled")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 use-waypoint=none: not bound", policy(ns="l7", targetRefs=[target("Service", "optout")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 use-waypoint=None: not bound", policy(ns="l7", targetRefs=[target("Service", "typo")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 a missing waypoint: not bound", policy(ns="l7", targetRefs=[target("Service", "to-missing")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 a waypoint without address: not bound", policy(ns="l7", targetRefs=[target("Service", "to-pending")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 a workload-only waypoint: not bound (UnsupportedTrafficType)", policy(ns="l7", targetRefs=[target("Service", "to-workload")]), {"PolicyTargetNotBound": "warn"}),
    ("Z3 a third-party waypoint never applies Istio policies", policy(ns="l7", targetRefs=[target("Service", "to-vendor")]), {"PolicyTargetNotIstioWaypoint": "warn"}),
    ("Z7 a Service bound through its namespace (R2) applies", policy(ns="inherit", targetRefs=[target("Service", "inherited")]), {}),
    ("Z7 a waypoint whose allowedRoutes refuse the namespace (AttachmentDenied): not bound", policy(ns="foreign", targetRefs=[target("Service", "refused")]), {"PolicyTargetNotBound": "warn"}),
    ("Z7 a bound ServiceEntry applies", policy(ns="l7", targetRefs=[target("ServiceEntry", "api")]), {}),
    ("Z7 several targets: each judged", policy(ns="l7", targetRefs=[target("Service", "reviews"), target("Service", "unlabelled"), target("Service", "x", "apps")]), {"PolicyTargetNotBound": "warn", "InvalidPolicyTarget": "deny"}),
    ("Z11 an RA targeting an unbound Service does nothing", policy("RequestAuthentication", ns="l7", targetRefs=[target("Service", "unlabelled")]), {"PolicyTargetNotBound": "warn"}),
    # Z2, Z11: selector and namespace-wide policies on ambient workloads
    ("Z2 an L4 selector ALLOW in ambient is the intended use", policy(ns="l7", selector={"matchLabels": {"app": "r"}}, rules=[{"from": [{"source": {"namespaces": ["a"]}}]}]), {}),
    ("Z11 a selector RequestAuthentication in ambient applies nowhere", policy("RequestAuthentication", ns="l7", selector={"matchLabels": {"app": "r"}}), {"SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z11 a namespace-wide WasmPlugin in ambient applies nowhere", policy("WasmPlugin", ns="l7", url="oci://x"), {"SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z2 a namespace-wide Telemetry also applies to waypoints", policy("Telemetry", ns="l7"), {}),
    ("Z2 a selector Telemetry is ignored by waypoints", policy("Telemetry", ns="l7", selector={"matchLabels": {"app": "r"}}), {"SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z2 an EnvoyFilter workloadSelector in ambient applies nowhere", policy("EnvoyFilter", ns="l7", workloadSelector={"labels": {"app": "r"}}), {"SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z2 outside ambient a selector policy is the sidecars' own business", policy("RequestAuthentication", ns="sidecars", selector={"matchLabels": {"app": "r"}}), {}),
    # Z4: actions ztunnel does not support
    ("Z4 AUDIT on ambient workloads has no effect", policy(ns="l7", action="AUDIT", rules=[{}]), {"ZtunnelUnsupportedAction": "warn"}),
    ("Z4 CUSTOM on ambient workloads has no effect", policy(ns="l7", action="CUSTOM", provider={"name": "ext"}, rules=[{}]), {"ZtunnelUnsupportedAction": "warn"}),
    ("Z4 a dry-run policy is not sent to ztunnel", policy(ns="l7", annotations={"istio.io/dry-run": "true"}, action="DENY", rules=[{"from": [{"source": {"namespaces": ["a"]}}]}]), {"ZtunnelUnsupportedAction": "warn"}),
    ("Z4 AUDIT through targetRefs is fine at a waypoint", policy(ns="l7", action="AUDIT", targetRefs=[target("Service", "reviews")], rules=[{}]), {}),
    # Z5: ALLOW at ztunnel
    ("Z5 an ALLOW rule with paths is dropped", policy(ns="l7", rules=[{"to": [{"operation": {"paths": ["/a"]}}]}, {"from": [{"source": {"namespaces": ["a"]}}]}]), {"ZtunnelAllowRuleDropped": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 every ALLOW rule dropped: allows nothing", policy(ns="l7", rules=[{"to": [{"operation": {"methods": ["GET"]}}]}]), {"ZtunnelAllowsNothing": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 an ALLOW from a trust domain alone allows nothing (not reported by istiod)", policy(ns="l7", rules=[{"from": [{"source": {"trustDomains": ["td"]}}]}]), {"ZtunnelAllowsNothing": "warn"}),
    ("Z5 an ALLOW with no rules is deny-all by design", policy(ns="l7"), {}),
    ("Z5 ALLOW: a when on request.headers is L7", policy(ns="l7", rules=[{"when": [{"key": "request.headers[x]", "values": ["1"]}]}]), {"ZtunnelAllowsNothing": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 ALLOW: a when on source.namespace is L4", policy(ns="l7", rules=[{"when": [{"key": "source.namespace", "values": ["a"]}]}]), {}),
    # Z5: DENY at ztunnel
    ("Z5 a DENY made only of paths never denies", policy(ns="l7", **HTTP_ONLY_DENY), {"ZtunnelDenyRuleIgnored": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 a DENY from a trust domain never denies, silently", policy(ns="l7", action="DENY", rules=[{"from": [{"source": {"notTrustDomains": ["td"]}}]}]), {"ZtunnelDenyRuleIgnored": "warn"}),
    ("Z5 ports + paths: the DENY widens to the port", policy(ns="l7", action="DENY", rules=[{"to": [{"operation": {"ports": ["9080"], "paths": ["/a"]}}]}]), {"ZtunnelDenyRuleWidened": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 an L4-only DENY is enforced as written", policy(ns="l7", action="DENY", rules=[{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]), {}),
    ("Z5 a DENY in the root namespace reaches the whole mesh", policy(ns="istio-system", **HTTP_ONLY_DENY), {"ZtunnelDenyRuleIgnored": "warn", "SelectorPolicyIgnoredByWaypoint": "warn"}),
    ("Z5 a DENY outside ambient is the sidecars'", policy(ns="sidecars", **HTTP_ONLY_DENY), {}),
    ("Z2 the same DENY through targetRefs is enforced at the waypoint", policy(ns="l7", targetRefs=[target("Service", "reviews")], **HTTP_ONLY_DENY), {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "obj", "expected"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_policy_rules(case: str, obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), obj) == expected


ROUTE_CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("Z9 a route to a bound Service in its namespace applies", route(ns="l7", parents=[service_parent("reviews")]), {}),
    ("Z9 a route in the waypoint's namespace applies", route(ns="l7", parents=[service_parent("inherited", "inherit")]), {}),
    ("Z9 a consumer route (client namespace) is ignored by the waypoint", route(ns="sidecars", parents=[service_parent("reviews", "l7")]), {"RouteIgnoredByWaypoint": "warn"}),
    ("Z10 a missing parent", route(ns="l7", parents=[service_parent("nope")]), {"RouteParentNotFound": "warn"}),
    ("Z10 label presence is not a binding: missing waypoint (istiod: ResolvedWaypoints=True)", route(ns="l7", parents=[service_parent("to-missing")]), {"RouteParentNotBound": "warn"}),
    ("Z10 label presence is not a binding: workload-only waypoint", route(ns="l7", parents=[service_parent("to-workload")]), {"RouteParentNotBound": "warn"}),
    ("Z10 label presence is not a binding: None", route(ns="l7", parents=[service_parent("typo")]), {"RouteParentNotBound": "warn"}),
    ("Z10 no label in ambient", route(ns="l7", parents=[service_parent("unlabelled")]), {"RouteParentNotBound": "warn"}),
    ("Z9 outside ambient an unbound parent is the sidecars' route", route(ns="sidecars", parents=[service_parent("web")]), {}),
    ("Z10 a third-party waypoint: istiod writes no parent status", route(ns="l7", parents=[service_parent("to-vendor")]), {"RouteParentOtherController": "warn"}),
    ("Z9 a ServiceEntry parent bound", route("GRPCRoute", ns="l7", parents=[service_parent("api", kind="ServiceEntry")]), {}),
    ("Z9 a Gateway parent is not A7's", route(ns="l7", parents=[{"name": "ingress"}]), {}),
    ("Z9 TCPRoute parents are judged alike", route("TCPRoute", ns="l7", parents=[service_parent("unlabelled")]), {"RouteParentNotBound": "warn"}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "obj", "expected"), ROUTE_CASES, ids=[c[0] for c in ROUTE_CASES])
def test_route_rules(case: str, obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), obj) == expected


def test_strict_denies_the_fail_open_ones() -> None:
    """B1 †: strict makes PolicyTargetNotBound, ZtunnelDenyRuleIgnored, ZtunnelAllowsNothing and
    RouteParentNotBound denials; InvalidPolicyTarget is a denial in both presets."""
    strict = engine(STATE, preset="strict")
    assert judge(strict, policy(ns="l7", targetRefs=[target("Service", "unlabelled")])) == {
        "PolicyTargetNotBound": "deny"
    }
    assert judge(strict, policy(ns="l7", **HTTP_ONLY_DENY))["ZtunnelDenyRuleIgnored"] == "deny"
    assert judge(strict, route(ns="l7", parents=[service_parent("unlabelled")])) == {"RouteParentNotBound": "deny"}


def test_unsynced_state_never_judges_targets() -> None:
    """Cluster state not synced: only what the object alone says (InvalidPolicyTarget) is reported."""
    e = engine(STATE, synced=False)
    assert judge(e, policy(ns="l7", targetRefs=[target("Service", "unlabelled")])) == {}
    assert judge(e, policy(ns="l7", targetRefs=[target("Service", "x", "apps")])) == {"InvalidPolicyTarget": "deny"}
    assert judge(e, route(ns="l7", parents=[service_parent("nope")])) == {}


def test_update_keeps_a_preexisting_invalid_target_a_warning() -> None:
    """B1 UPDATE: a bad target already there does not block an unrelated edit."""
    old = policy(ns="l7", targetRefs=[target("Service", "x", "apps")])
    new = policy(ns="l7", targetRefs=[target("Service", "x", "apps")], action="DENY")
    assert judge(engine(STATE), new, "UPDATE", old) == {"InvalidPolicyTarget": "warn"}


def test_messages_give_the_cause_istiod_drops() -> None:
    """Z7: istiod says AncestorNotBound whatever the cause; the finding names it."""
    e = engine(STATE)
    v = e.validate(request(policy(ns="l7", targetRefs=[target("Service", "to-workload")])))
    (j,) = v.judged
    assert "to-workload" in j.message and "workload" in j.message and j.field == "spec.targetRefs[0]"


def test_malformed_policy_is_a_400() -> None:
    with pytest.raises(Malformed) as e:
        engine(STATE).validate(request(policy(ns="l7", targetRefs="Service/x")))
    assert e.value.field == "spec.targetRefs"
