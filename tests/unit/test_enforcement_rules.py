"""SPEC A7 Z14, table-driven: the changes that unbind a Service take its waypoint-only policies and
routes out of enforcement (PolicyEnforcementLost), found through the reverse index.

The cluster: ambient namespace ``l7`` with waypoint ``wp``; ``reviews`` bound by its own label,
``details`` through the Namespace ``inherit`` (waypoint ``shared`` of ``l7``, open to all); an L7
DENY targeting each, a RequestAuthentication and an HTTPRoute on ``reviews``, a policy on the
waypoint Gateway itself.
"""

from __future__ import annotations

import copy
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
from webhook.core.index import Index

UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}
DENY: dict[str, Any] = {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}
INHERIT = namespace("inherit", **AMBIENT, **{UW: "shared", UWN: "l7"})


def svc(name: str, ns: str = "l7", **labels: str) -> dict[str, Any]:
    return consumer("Service", name, ns, labels or None, spec={"ports": [{"port": 9080}]})


def objects() -> list[dict[str, Any]]:
    return [
        namespace("l7", **AMBIENT),
        INHERIT,
        gateway_class("istio-waypoint"),
        gateway("wp", "l7"),
        gateway("shared", "l7", routes={"from": "All"}),
        svc("reviews", **{UW: "wp"}),
        svc("details", "inherit"),
        svc("lonely", **{UW: "wp"}),  # bound, but nothing targets it
        policy(name="reviews-deny", ns="l7", targetRefs=[target("Service", "reviews")], **DENY),
        policy("RequestAuthentication", "reviews-jwt", "l7", targetRefs=[target("Service", "reviews")]),
        route(name="reviews-route", ns="l7", parents=[service_parent("reviews")]),
        policy(name="details-deny", ns="inherit", targetRefs=[target("Service", "details")], **DENY),
        policy("Telemetry", "wp-telemetry", "l7", targetRefs=[target("Gateway", "wp")]),
    ]


STATE = state(*objects())


def relabel(obj: dict[str, Any], **labels: str | None) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    current = new["metadata"].setdefault("labels", {})
    for k, v in labels.items():
        key = {"uw": UW, "uwn": UWN, "wf": "istio.io/waypoint-for"}[k]
        if v is None:
            current.pop(key, None)
        else:
            current[key] = v
    return new


REVIEWS, DETAILS, LONELY = svc("reviews", **{UW: "wp"}), svc("details", "inherit"), svc("lonely", **{UW: "wp"})
WP = gateway("wp", "l7")
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]] = [
    ("Z14 removing a Service's use-waypoint", relabel(REVIEWS, uw=None), REVIEWS, {"PolicyEnforcementLost": "warn"}),
    ("Z14 setting use-waypoint=none", relabel(REVIEWS, uw="none"), REVIEWS, {"PolicyEnforcementLost": "warn"}),
    ("Z14 pointing it at a missing waypoint", relabel(REVIEWS, uw="ghost"), REVIEWS, {"PolicyEnforcementLost": "warn", "WaypointNotFound": "warn"}),
    ("Z14 moving it to another bound waypoint keeps enforcement", relabel(REVIEWS, uw="shared"), REVIEWS, {}),
    ("Z14 unbinding a Service nothing targets", relabel(LONELY, uw=None), LONELY, {}),
    ("Z14 an unrelated label", {**REVIEWS, "metadata": {**REVIEWS["metadata"], "labels": {UW: "wp", "app": "r"}}}, REVIEWS, {}),
    ("Z14 a Namespace that drops the waypoint its Services inherit", relabel(INHERIT, uw=None, uwn=None), INHERIT, {"PolicyEnforcementLost": "warn"}),
    ("Z14 a Namespace that keeps it", {**INHERIT, "metadata": {**INHERIT["metadata"], "labels": {**INHERIT["metadata"]["labels"], "team": "a"}}}, INHERIT, {}),
    ("Z14 a waypoint switched to workload traffic", relabel(WP, wf="workload"), WP, {"PolicyEnforcementLost": "warn", "ConsumersWouldBreak": "warn"}),
    ("Z14 a waypoint that keeps serving", relabel(WP, wf="all"), WP, {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "new", "old", "expected"), CASES, ids=[c[0] for c in CASES])
def test_unbinding_updates(case: str, new: dict[str, Any], old: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), new, "UPDATE", old) == expected


def test_message_counts_and_names_fail_open_policies_first() -> None:
    v = engine(STATE).validate(request(relabel(REVIEWS, uw=None), "UPDATE", REVIEWS))
    (j,) = v.judged
    assert j.field == f"metadata.labels[{UW}]"
    assert "stops 3 policies or routes applying" in j.message
    assert "(AuthorizationPolicy l7/reviews-deny (fail-open), HTTPRoute l7/reviews-route, …)" in j.message
    assert "1 fail open" in j.message


def test_deleting_the_waypoint_drops_its_services_and_its_own_policies() -> None:
    """Z14: the Service-targeted ones of reviews, and the Telemetry targeting the Gateway itself."""
    v = engine(STATE).validate(request(None, "DELETE", WP, kind="Gateway"))
    found = {str(j.code): j.message for j in v.judged}
    assert "WaypointInUse" in found and "stops 4 policies or routes applying" in found["PolicyEnforcementLost"]


def test_strict_denies_the_unbinding_the_seed_shows() -> None:
    """The seed's `kubectl label svc reviews istio.io/use-waypoint-` with an L7 DENY on reviews."""
    assert judge(engine(STATE, preset="strict"), relabel(REVIEWS, uw=None), "UPDATE", REVIEWS) == {
        "PolicyEnforcementLost": "deny"
    }


def test_unsynced_view_says_nothing() -> None:
    assert judge(engine(STATE, synced=False), relabel(REVIEWS, uw=None), "UPDATE", REVIEWS) == {}


def test_the_reverse_index_follows_policies_incrementally() -> None:
    """Put, retarget and delete: the index holds exactly the current targets (O(policy) each)."""
    index = Index()
    ap = policy(name="p", ns="l7", targetRefs=[target("Service", "a"), target("Service", "x", "apps")])
    index.apply(ap)
    assert [d.name for d in index.dependents_of("Service", "l7", "a")] == ["p"]
    assert index.targeted_in("l7") == [("Service", "a")]  # the impossible target is not indexed
    index.apply(policy(name="p", ns="l7", targetRefs=[target("Service", "b")]))
    assert index.dependents_of("Service", "l7", "a") == [] and index.targeted_in("l7") == [("Service", "b")]
    index.apply(route(name="r", ns="l7", parents=[service_parent("b")]))
    assert sorted(d.kind for d in index.dependents_of("Service", "l7", "b")) == ["AuthorizationPolicy", "HTTPRoute"]
    index.apply(policy(name="p", ns="l7"), deleted=True)
    index.apply(route(name="r", ns="l7"), deleted=True)
    assert index.dependents_of("Service", "l7", "b") == [] and index.targeted_in("l7") == []


def test_impact_depends_on_the_policies_of_the_service_not_the_total() -> None:
    """1,000 policies on other Services: the rule reads only the reverse index entries of reviews."""
    big = state(
        *objects(), *(policy(name=f"p{i}", ns="l7", targetRefs=[target("Service", f"s{i}")]) for i in range(1000))
    )
    assert len(big.dependents_of("Service", "l7", "reviews")) == 3
    assert judge(engine(big), relabel(REVIEWS, uw=None), "UPDATE", REVIEWS) == {"PolicyEnforcementLost": "warn"}


def test_a_class_whose_default_stops_serving_services_unbinds_its_waypoints_services() -> None:
    """Z14 through a GatewayClass: wp has no waypoint-for of its own, so the class's label decides (L3)."""
    old = gateway_class("istio-waypoint", {"istio.io/waypoint-for": "service"})
    new = gateway_class("istio-waypoint", {"istio.io/waypoint-for": "workload"})
    e = engine(state(*objects(), old))
    assert judge(e, new, "UPDATE", old) == {"PolicyEnforcementLost": "warn"}
    assert judge(e, gateway_class("istio-waypoint", {"istio.io/waypoint-for": "all"}), "UPDATE", old) == {}
    (j,) = e.validate(request(new, "UPDATE", old)).judged
    assert j.message.startswith("GatewayClass istio-waypoint: this change stops 4 policies or routes applying")
