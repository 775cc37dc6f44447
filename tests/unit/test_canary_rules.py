"""R6 (Istio 1.31): canary waypoints on Services and ServiceEntries, judged like primary references,
with the Namespace's canary label and weight consulted only by objects that inherit their primary
from it, and an object's own canary (even "" or none, the opt-out) winning (docs/rules.md R6, B1)."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.builders import consumer, engine, gateway, judge, ns_labels, request, state, verdict_codes

UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
C, CN, W = (
    "istio.io/use-waypoint-canary",
    "istio.io/use-waypoint-canary-namespace",
    "istio.io/use-waypoint-canary-weight",
)
AMBIENT = {"istio.io/dataplane-mode": "ambient"}


def namespace(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    ns = ns_labels(name, {**AMBIENT, **labels})
    if annotations:
        ns["metadata"]["annotations"] = annotations
    return ns


STATE = state(
    namespace("prod", {}),
    namespace("nsc", {UW: "primary", C: "ghost"}),
    namespace("nsw", {UW: "primary", C: "v2"}, {W: "lots"}),
    gateway("primary", "prod"),
    gateway("v2", "prod"),
    gateway("v2wl", "prod", labels={"istio.io/waypoint-for": "workload"}),
    gateway("v2cold", "prod", ready=False),
    gateway("same", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Same"}),
    gateway("primary", "nsc"),
    gateway("primary", "nsw"),
    gateway("v2", "nsw"),
)


def svc(labels: dict[str, str], ns: str = "prod", weight: str | None = None) -> dict[str, Any]:
    return consumer("Service", "reviews", ns, labels, annotations={W: weight} if weight is not None else None)


CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("R6 a canary taking 20%", svc({UW: "primary", C: "v2"}, weight="20"), {}),
    ("R6 no weight means 0: still a valid canary", svc({UW: "primary", C: "v2"}), {}),
    ("R6 none means no canary", svc({UW: "primary", C: "none"}), {}),
    ("R6 the canary is the primary", svc({UW: "primary", C: "primary"}), {"CanarySameAsPrimary": "warn"}),
    ("R6 weight over 100", svc({UW: "primary", C: "v2"}, weight="150"), {"CanaryInvalidWeight": "deny"}),
    ("R6 weight not an integer", svc({UW: "primary", C: "v2"}, weight="20%"), {"CanaryInvalidWeight": "deny"}),
    ("R6 canary not found", svc({UW: "primary", C: "ghost"}), {"WaypointNotFound": "warn"}),
    ("R6 canary not ready", svc({UW: "primary", C: "v2cold"}), {"WaypointNotReady": "warn"}),
    ("R6 canary for workloads only", svc({UW: "primary", C: "v2wl"}), {"UnsupportedTrafficType": "deny"}),
    ("R6 canary refusing the namespace", svc({UW: "primary", C: "same", CN: "infra"}), {"AttachmentDenied": "deny"}),
    ("R6 a broken primary: the canary is ignored", svc({UW: "missing", C: "ghost"}), {"WaypointNotFound": "warn"}),
    ("R6 an own empty canary is no canary (the opt-out)", svc({UW: "primary", C: ""}), {}),
    ("B1 canary label syntax: None", svc({UW: "primary", C: "None"}), {"InvalidUseWaypoint": "deny"}),
    ("B1 canary namespace syntax", svc({UW: "primary", C: "v2", CN: "Infra"}), {"InvalidUseWaypointNamespace": "deny"}),
    (
        "R6 Pods have no canary",
        consumer("Pod", "p", "prod", {UW: "primary", C: "ghost"}),
        {"UnsupportedTrafficType": "deny"},
    ),
    ("R6 the Namespace's canary applies to its Services, as warnings", svc({}, ns="nsc"), {"WaypointNotFound": "warn"}),
    (
        "R6 a Service with its own primary uses only its own weight (absent is 0)",
        svc({UW: "primary", C: "v2"}, ns="nsw"),
        {},
    ),
    (
        "R6 a Service that inherits its primary inherits the Namespace's canary and weight",
        svc({}, ns="nsw"),
        {"CanaryInvalidWeight": "warn"},
    ),
    ("R6 a Service with its own primary never gets the Namespace's canary", svc({UW: "primary"}, ns="nsc"), {}),
    ("R6 an own 'none' canary opts out of the Namespace's", svc({C: "none"}, ns="nsc"), {}),
    ("R6 an own empty canary opts out of the Namespace's", svc({C: ""}, ns="nsc"), {}),
    ("R6 the Service's own weight wins over the Namespace's", svc({UW: "primary", C: "v2"}, ns="nsw", weight="5"), {}),
    # as for its primary waypoint, a Namespace's canary that will not serve its Services is a warning there
    (
        "R6 a Namespace is judged as its Services see it",
        namespace("prod", {UW: "primary", C: "v2wl"}),
        {"NamespaceWaypointTrafficType": "warn"},
    ),
    (
        "R6 a Namespace's own canary weight",
        namespace("prod", {UW: "primary", C: "v2"}, {W: "-1"}),
        {"CanaryInvalidWeight": "deny"},
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_canary_findings(obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), obj) == expected


def test_a_canary_finding_names_the_canary_label() -> None:
    v = engine(STATE).validate(request(svc({UW: "primary", C: "v2wl"})))
    (j,) = v.judged
    assert j.finding.field == f"metadata.labels[{C}]" and "canary" in j.finding.message


def test_deleting_a_canary_waypoint_counts_its_canary_references() -> None:
    """WaypointInUse counts canary references (R6): deleting v2 takes 20% of reviews' traffic with it."""
    idx = state(
        *[
            o
            for o in (
                namespace("prod", {}),
                gateway("primary", "prod"),
                gateway("v2", "prod"),
                svc({UW: "primary", C: "v2"}, weight="20"),
            )
        ]
    )
    v = engine(idx).validate(request(None, "DELETE", gateway("v2", "prod"), kind="Gateway"))
    assert verdict_codes(v) == {"WaypointInUse": "warn"}


def test_a_canary_rides_on_a_primary_istiod_binds_even_when_it_is_no_waypoint_class() -> None:
    """Found by the random differential (world 100113): a primary of a third-party class gets
    NotAWaypoint, a policy warning, but istiod binds it, so the canary is judged (R6, W1)."""
    index = state(
        namespace("shop", {UW: "gw", UWN: "edge"}),
        ns_labels("edge", {**AMBIENT}),
        gateway("gw", "edge", cls="third", routes={"from": "All"}),
    )
    from testkit.builders import gateway_class

    index.apply(gateway_class("third", controller="example.com/gateway-controller"))
    obj = consumer("Service", "s", "shop", {C: "gw", CN: "edge"}, {W: "0"})
    assert judge(engine(index), obj) == {"NotAWaypoint": "warn", "CanarySameAsPrimary": "warn"}
