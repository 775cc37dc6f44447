"""Request-level rules of docs/rules.md B1: UPDATE, controller-owned Pods, DELETE impact, presets, scope."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testkit.builders import (
    consumer,
    engine,
    gateway,
    judge,
    namespace,
    ns_labels,
    request,
    state,
    verdict_codes,
    workload,
)
from webhook.core.findings import Policy, Severity, parse_overrides
from webhook.core.index import Index

UW = "istio.io/use-waypoint"
UWN = "istio.io/use-waypoint-namespace"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}


def base_state() -> Index:
    return state(
        namespace("default", **AMBIENT),
        ns_labels("blue", {**AMBIENT, "team": "blue"}),
        gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"}),
        gateway("wl", "default", labels={"istio.io/waypoint-for": "workload"}),
        gateway(
            "sel",
            "infra",
            labels={"istio.io/waypoint-for": "all"},
            routes={"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}},
        ),
    )


def svc(labels: dict[str, str], ns: str = "default", app: str = "v1") -> dict[str, Any]:
    s = consumer("Service", "svc", ns, {**labels, "app": app})
    return s


# --- UPDATE ------------------------------------------------------------------------------


def test_update_that_introduces_a_bad_label_is_denied() -> None:
    assert judge(engine(base_state()), svc({UW: "None"}), "UPDATE", svc({})) == {"InvalidUseWaypoint": "deny"}


def test_update_that_changes_a_bad_label_to_another_bad_one_is_denied() -> None:
    """B1: 'introduces or changes the offending label'."""
    assert judge(engine(base_state()), svc({UW: "NONE"}), "UPDATE", svc({UW: "None"})) == {"InvalidUseWaypoint": "deny"}


def test_unrelated_edit_of_an_object_with_a_preexisting_problem_warns() -> None:
    old, new = svc({UW: "None"}, app="v1"), svc({UW: "None"}, app="v2")
    assert judge(engine(base_state()), new, "UPDATE", old) == {"InvalidUseWaypoint": "warn"}


def test_removing_use_waypoint_is_always_allowed() -> None:
    v = engine(base_state()).validate(request(svc({}), "UPDATE", svc({UW: "None", UWN: "Bad"})))
    assert v.allowed


def test_fixing_a_bad_label_is_allowed() -> None:
    v = engine(base_state()).validate(request(svc({UW: "waypoint"}), "UPDATE", svc({UW: "None"})))
    assert v.allowed and verdict_codes(v) == {}


def test_update_keeps_preexisting_attachment_denial_a_warning() -> None:
    bad = svc({UW: "sel", UWN: "infra"})
    assert judge(engine(base_state()), svc({UW: "sel", UWN: "infra"}, app="v2"), "UPDATE", bad) == {
        "AttachmentDenied": "warn"
    }


def test_namespace_update_dropping_the_selected_label_is_denied() -> None:
    """The change breaks its own binding, so the request introduces the problem."""
    old = ns_labels("blue", {**AMBIENT, "team": "blue", UW: "sel", UWN: "infra"})
    new = ns_labels("blue", {**AMBIENT, UW: "sel", UWN: "infra"})
    assert judge(engine(base_state()), new, "UPDATE", old) == {"AttachmentDenied": "deny"}


def test_seed_kubectl_label_pod_follows_general_rules() -> None:
    """B1: a user's UPDATE of a controller-owned Pod's labels is judged normally."""
    old = consumer("Pod", "reviews-v2", labels={"app": "reviews"}, owner=True)
    new = consumer("Pod", "reviews-v2", labels={"app": "reviews", UW: "waypoint"}, owner=True)
    assert judge(engine(base_state()), new, "UPDATE", old) == {"UnsupportedTrafficType": "deny"}


def test_malformed_old_object_does_not_hide_new_findings() -> None:
    old = svc({})
    old["metadata"]["labels"] = "oops"
    assert judge(engine(base_state()), svc({UW: "None"}), "UPDATE", old) == {"InvalidUseWaypoint": "deny"}


# --- controller-owned Pods and workloads -------------------------------------------------


def test_controller_owned_pod_create_is_never_denied() -> None:
    pod = consumer("Pod", "rs-abc", labels={UW: "None"}, owner=True)
    v = engine(base_state()).validate(request(pod))
    assert v.allowed and verdict_codes(v) == {"InvalidUseWaypoint": "warn"}


def test_unowned_pod_create_is_denied() -> None:
    assert judge(engine(base_state()), consumer("Pod", "p", labels={UW: "None"})) == {"InvalidUseWaypoint": "deny"}


def test_replicaset_created_by_a_deployment_is_not_blocked() -> None:
    rs = workload("ReplicaSet", labels={UW: "None"}, owner=True)
    assert judge(engine(base_state()), rs) == {"InvalidUseWaypoint": "warn"}


def test_owner_without_controller_flag_does_not_count() -> None:
    pod = consumer("Pod", "p", labels={UW: "None"}, owner=True)
    pod["metadata"]["ownerReferences"][0]["controller"] = False
    assert judge(engine(base_state()), pod) == {"InvalidUseWaypoint": "deny"}


# --- DELETE and ConsumersWouldBreak -------------------------------------------------------


def _consumers_state() -> Index:
    idx = base_state()
    for i in range(3):
        idx.apply(consumer("Service", f"s{i}", labels={UW: "waypoint"}))
    idx.apply(ns_labels("default", {**AMBIENT, UW: "waypoint"}))
    idx.apply(consumer("Pod", "p1", "blue", labels={UW: "sel", UWN: "infra"}))
    return idx


def test_delete_of_a_used_waypoint_warns_with_count_and_examples() -> None:
    e = engine(_consumers_state())
    v = e.validate(request(None, "DELETE", gateway("waypoint", "default"), kind="Gateway"))
    assert v.allowed
    (j,) = v.judged
    assert j.code == "WaypointInUse" and j.severity is Severity.WARN
    assert "4 objects" in j.finding.message and "Namespace default" in j.finding.message


def test_delete_of_a_used_waypoint_is_denied_under_strict() -> None:
    e = engine(_consumers_state(), preset="strict")
    assert not e.validate(request(None, "DELETE", gateway("waypoint", "default"), kind="Gateway")).allowed


def test_delete_of_an_unused_waypoint_is_clean() -> None:
    v = engine(_consumers_state()).validate(request(None, "DELETE", gateway("wl", "default"), kind="Gateway"))
    assert v.judged == []


def test_delete_of_other_kinds_is_ignored() -> None:
    v = engine(_consumers_state()).validate(request(None, "DELETE", svc({UW: "None"}), kind="Service"))
    assert v.judged == []


def test_consumers_would_break_on_waypoint_for_change() -> None:
    old = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"})
    new = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "workload"})
    codes = judge(engine(_consumers_state()), new, "UPDATE", old)
    assert codes == {"ConsumersWouldBreak": "warn"}


def test_widening_waypoint_for_breaks_nothing() -> None:
    old = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"})
    new = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "all"})
    assert judge(engine(_consumers_state()), new, "UPDATE", old) == {}


def test_consumers_would_break_on_allowed_routes_change() -> None:
    old = gateway(
        "sel",
        "infra",
        labels={"istio.io/waypoint-for": "all"},
        routes={"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}},
    )
    new = gateway("sel", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Same"})
    v = engine(_consumers_state(), preset="strict").validate(request(new, "UPDATE", old))
    assert verdict_codes(v) == {"ConsumersWouldBreak": "deny"}
    assert "Pod blue/p1" in v.judged[0].finding.message


def test_status_only_change_does_not_check_consumers() -> None:
    old = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"}, ready=False)
    new = gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"})
    assert judge(engine(_consumers_state()), new, "UPDATE", old) == {}


# --- presets, overrides, scope -----------------------------------------------------------


def test_strict_preset_turns_dagger_warnings_into_denials() -> None:
    obj = svc({UW: "ghost"})
    assert judge(engine(base_state()), obj) == {"WaypointNotFound": "warn"}
    assert judge(engine(base_state(), preset="strict"), obj) == {"WaypointNotFound": "deny"}


def test_strict_never_denies_inherited_findings() -> None:
    idx = base_state()
    idx.apply(ns_labels("lost", {**AMBIENT, UW: "ghost"}))
    assert judge(engine(idx, preset="strict"), svc({}, ns="lost")) == {"WaypointNotFound": "warn"}


def test_strict_never_denies_on_an_unsynced_cache() -> None:
    assert judge(engine(base_state(), preset="strict", synced=False), svc({UW: "ghost"})) == {
        "StateUnavailable": "warn"
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("InvalidUseWaypoint=warn", {"InvalidUseWaypoint": "warn"}),
        ("InvalidUseWaypoint=off", {}),
        ("InvalidUseWaypoint=deny", {"InvalidUseWaypoint": "deny"}),
    ],
)
def test_per_code_overrides(override: str, expected: dict[str, str]) -> None:
    e = engine(base_state(), overrides=parse_overrides([override]))
    assert judge(e, svc({UW: "None"})) == expected


def test_override_beats_preset() -> None:
    e = engine(base_state(), preset="strict", overrides={"WaypointNotFound": Severity.OFF})
    assert judge(e, svc({UW: "ghost"})) == {}


def test_unknown_codes_and_presets_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown finding code"):
        parse_overrides(["NoSuchCode=deny"])
    with pytest.raises(ValueError, match="deny, warn or off"):
        parse_overrides(["WaypointNotFound=block"])
    with pytest.raises(ValueError, match="preset"):
        Policy("lenient")


def test_excluded_namespaces_are_not_judged() -> None:
    obj = consumer("Service", "s", "kube-system", {UW: "None"})
    assert judge(engine(base_state()), obj) == {}
    assert judge(engine(base_state()), ns_labels("kube-system", {UW: "None"})) == {}


def test_subresource_requests_are_not_judged() -> None:
    from dataclasses import replace

    req = replace(request(svc({UW: "None"})), sub_resource="status")
    assert engine(base_state()).validate(req).judged == []


def test_dry_run_is_judged_identically() -> None:
    e = engine(base_state())
    a = e.validate(request(svc({UW: "None"}), dry_run=True))
    b = e.validate(request(svc({UW: "None"})))
    assert verdict_codes(a) == verdict_codes(b) == {"InvalidUseWaypoint": "deny"}


def test_validation_does_not_modify_the_request_object() -> None:
    obj = svc({UW: "waypoint"})
    before = copy.deepcopy(obj)
    engine(base_state()).validate(request(obj))
    assert obj == before
