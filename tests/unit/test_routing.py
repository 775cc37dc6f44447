"""Failure policies derived from what can deny (webhook.core.routing; issue 19 item 2, docs/rules.md
B1): an entry fails closed only where one of its requests could have been denied.

Each route is checked against the engine itself: a request of a fail-closed route that the engine
denies exists (so Fail is not a guess), and no request of a capped route is ever denied however
bad its labels (so Ignore loses nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.builders import consumer, engine, gateway, request, state, workload
from webhook.core.findings import Code, Policy, Severity
from webhook.core.index import Index
from webhook.core.routing import ROUTES, Route, blocked_in_outage

ROUTE = {r.name.split(".")[0]: r for r in ROUTES}
BAD = {"istio.io/use-waypoint": "None", "istio.io/use-waypoint-namespace": "Bad_NS"}


@pytest.mark.parametrize(
    ("route", "preset", "expected"),
    [
        ("gateways", "default", "Fail"),
        ("gateway-deletes", "default", "Ignore"),  # B1: WaypointInUse is warn†
        ("gateway-deletes", "strict", "Fail"),
        ("consumers", "default", "Fail"),
        ("replicas", "default", "Ignore"),  # B1: a controller's Pod CREATE is never denied
        ("replicas", "strict", "Ignore"),
        ("workloads", "default", "Fail"),
        ("owned-workloads", "strict", "Ignore"),
    ],
)
def test_failure_policy_per_preset(route: str, preset: str, expected: str) -> None:
    assert ROUTE[route].failure_policy(Policy(preset)) == expected


def test_an_override_that_denies_closes_the_route_and_one_that_silences_opens_it() -> None:
    deletes = ROUTE["gateway-deletes"]
    assert deletes.failure_policy(Policy(overrides={"WaypointInUse": Severity.DENY})) == "Fail"
    # Under strict a delete can deny for in-use consumers and for policies it stops (Z14): both warn, it opens.
    assert deletes.failure_policy(Policy("strict", {"WaypointInUse": Severity.WARN})) == "Fail"
    both = {"WaypointInUse": Severity.WARN, "PolicyEnforcementLost": Severity.WARN}
    assert deletes.failure_policy(Policy("strict", both)) == "Ignore"
    # MalformedObject cannot be overridden: the write entries stay closed whatever else is silenced.
    off = {str(c): Severity.OFF for c in ROUTE["consumers"].codes() if c is not Code.MalformedObject}
    assert ROUTE["consumers"].failure_policy(Policy(overrides=off)) == "Fail"
    assert ROUTE["consumers"].denying_codes(Policy(overrides=off)) == {Code.MalformedObject}


def test_the_codes_of_a_route_are_the_registrys() -> None:
    assert Code.WaypointInUse in ROUTE["gateway-deletes"].codes()
    assert Code.MissingMeshListener not in ROUTE["gateway-deletes"].codes()
    assert Code.MalformedObject not in ROUTE["gateway-deletes"].codes()  # a DELETE always goes through
    assert {Code.InvalidUseWaypoint, Code.AttachmentDenied} <= ROUTE["consumers"].codes()


def test_an_outage_blocks_only_the_routes_that_can_deny() -> None:
    assert [r.name.split(".")[0] for r in blocked_in_outage(Policy())] == ["gateways", "consumers", "workloads"]
    assert "gateway-deletes" in [r.name.split(".")[0] for r in blocked_in_outage(Policy("strict"))]


def _denied(
    preset: str,
    req_obj: dict[str, Any] | None,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    st: Index | None = None,
) -> bool:
    v = engine(st, preset).validate(request(req_obj, operation, old))
    return any(j.severity is Severity.DENY for j in v.judged)


def test_the_fail_closed_routes_have_requests_the_engine_denies() -> None:
    assert _denied("default", gateway("wp", "ns1", listeners=[]))  # gateways: MissingMeshListener
    assert _denied("default", consumer("Service", "s", "ns1", BAD))  # consumers
    assert _denied("default", workload("Deployment", "d", "ns1", BAD))  # workloads
    wp = gateway("wp", "ns1")
    users = state(wp, consumer("Service", "s", "ns1", {"istio.io/use-waypoint": "wp"}))
    assert _denied("strict", None, "DELETE", wp, users)  # gateway-deletes, strict
    assert not _denied("default", None, "DELETE", wp, users)  # ... and not by default


@pytest.mark.parametrize("kind", ["Pod", "ReplicaSet", "Job"])
@pytest.mark.parametrize("preset", ["default", "strict"])
def test_a_controllers_create_is_never_denied(kind: str, preset: str) -> None:
    obj = consumer("Pod", "p", "ns1", BAD, owner=True) if kind == "Pod" else workload(kind, "w", "ns1", BAD, owner=True)
    assert not _denied(preset, obj)
    # The same object without its controller is denied: the cap is what opens the route.
    plain = consumer("Pod", "p", "ns1", BAD) if kind == "Pod" else workload(kind, "w", "ns1", BAD)
    assert _denied(preset, plain)


def test_a_controllers_malformed_create_is_a_warning_not_a_denial() -> None:
    pod = consumer("Pod", "p", "ns1", {"istio.io/use-waypoint": "wp"}, owner=True)
    pod["metadata"]["annotations"] = ["not", "a", "map"]
    v = engine(None).validate(request(pod))
    assert [(j.code, j.severity) for j in v.judged] == [(Code.MalformedObject, Severity.WARN)]


def test_deleting_a_malformed_gateway_is_allowed() -> None:
    gw = gateway("wp", "ns1")
    gw["spec"]["listeners"] = "not-a-list"
    v = engine(None, "strict").validate(request(None, "DELETE", gw, kind="Gateway"))
    assert not v.judged and v.skipped


def test_every_route_is_named_for_the_webhook_and_says_why() -> None:
    for r in ROUTES:
        assert isinstance(r, Route) and r.name.endswith(".validate.waypoint-webhook.io") and r.why
