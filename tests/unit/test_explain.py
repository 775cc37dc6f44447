"""``explain``: the resolution walked as istiod walks it, one step per rule ID, ending in the
waypoint the data plane uses or why none (webhook.core.explain), and the command around it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.builders import consumer, engine, gateway, namespace, state
from webhook.cli.commands import main
from webhook.core.explain import Explanation, explain

UW, UWNS, AMBIENT = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace", {"istio.io/dataplane-mode": "ambient"}
SHOP = namespace("shop", **AMBIENT)
WP = gateway("wp", "shop")
WORKLOADS = gateway("wp", "shop", labels={"istio.io/waypoint-for": "workload"})


def walk(obj: dict[str, Any], *cluster: dict[str, Any]) -> Explanation:
    return explain(obj, engine(state(SHOP, *cluster, obj)))


def rules(e: Explanation) -> list[tuple[str, bool | None]]:
    return [(s.rule, s.ok) for s in e.steps]


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], str, str]] = [
    # (id citing the rule, object, cluster, waypoint used, the failing rule or "")
    ("R1 own label binds", consumer("Service", "s", "shop", {UW: "wp"}), [WP], "shop/wp", ""),
    ("R2 inherited from the namespace", consumer("Service", "s", "shop"), [WP, namespace("shop", **AMBIENT, **{UW: "wp"})], "shop/wp", ""),
    ("L1 none opts out", consumer("Service", "s", "shop", {UW: "none"}), [WP], "", "L1"),
    ("R2 nothing names a waypoint", consumer("Service", "s", "shop"), [WP], "", "R2"),
    ("W1 missing Gateway", consumer("Service", "s", "shop", {UW: "ghost"}), [], "", "W1"),
    ("W1 not ready", consumer("Service", "s", "shop", {UW: "wp"}), [gateway("wp", "shop", ready=False)], "", "W1"),
    ("W2 not a waypoint class", consumer("Service", "s", "shop", {UW: "gw"}), [gateway("gw", "shop", cls="nginx")], "shop/gw", "W2"),
    ("P2 Same refuses another namespace", consumer("Service", "s", "other", {UW: "wp", UWNS: "shop"}), [WP, namespace("other", **AMBIENT)], "", "P2-P4"),
    ("P2 All admits it", consumer("Service", "s", "other", {UW: "wp", UWNS: "shop"}), [gateway("wp", "shop", routes={"from": "All"}), namespace("other", **AMBIENT)], "shop/wp", ""),
    ("R3 workload waypoint refuses a Service", consumer("Service", "s", "shop", {UW: "wp"}), [gateway("wp", "shop", labels={"istio.io/waypoint-for": "workload"})], "", "R3"),
    ("L5 a pod not captured", consumer("Pod", "p", "shop", {UW: "wp", "istio.io/dataplane-mode": "none"}), [WORKLOADS], "", "L5"),
    ("L5 a captured pod binds", consumer("Pod", "p", "shop", {UW: "wp"}), [WORKLOADS], "shop/wp", ""),
]  # fmt: skip


@pytest.mark.parametrize(("case", "obj", "cluster", "used", "failing"), CASES, ids=[c[0] for c in CASES])
def test_the_walk(case: str, obj: dict[str, Any], cluster: list[dict[str, Any]], used: str, failing: str) -> None:
    e = walk(obj, *cluster)
    assert e.waypoint == used, e.lines()
    failed = [rule for rule, ok in rules(e) if ok is False]
    assert (failed[0] if failed else "") == failing, e.lines()
    assert bool(e.why_none) == (not used), e.lines()


def test_the_end_names_the_findings_the_webhook_reports() -> None:
    e = walk(
        consumer("Service", "s", "shop", {UW: "wp"}),
        gateway("wp", "shop", labels={"istio.io/waypoint-for": "workload"}),
    )
    assert [str(j.code) for j in e.findings] == ["UnsupportedTrafficType"]
    assert e.lines()[-2].startswith("=> no waypoint: the waypoint is for 'workload'")


def test_a_canary_is_shown() -> None:
    canary = gateway("canary", "shop")
    svc = consumer(
        "Service",
        "s",
        "shop",
        {UW: "wp", "istio.io/use-waypoint-canary": "canary"},
        {"istio.io/use-waypoint-canary-weight": "10"},
    )
    e = walk(svc, WP, canary)
    assert ("R6", None) in rules(e) and any("canary shop/canary takes weight '10'" in s.text for s in e.steps)


@pytest.fixture
def cluster_files(tmp_path: Path) -> Path:
    docs = [SHOP, gateway("wp", "shop", ready=False), consumer("Service", "reviews", "shop", {UW: "wp"})]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path


def test_the_command_reads_state_and_writes_json(cluster_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "svc/reviews", "-n", "shop", "--state", str(cluster_files), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["object"] == {"kind": "Service", "namespace": "shop", "name": "reviews"}
    assert out["waypoint"] is None and "not ready" in out["noWaypointBecause"]
    assert [s["rule"] for s in out["steps"]][:4] == ["R1", "L2", "W1", "W2"]
    assert main(["explain", "services/reviews", "-n", "shop", "--state", str(cluster_files)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Service shop/reviews"


def test_an_unknown_object_or_kind_is_exit_2(cluster_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "svc/ghost", "-n", "shop", "--state", str(cluster_files)]) == 2
    assert "Service ghost not found in namespace shop" in capsys.readouterr().err
    assert main(["explain", "widget/x", "--state", str(cluster_files)]) == 2


def test_explain_lists_the_policies_and_routes_that_target_a_service() -> None:
    """A7 Z3, Z9: which policies and routes target the Service, and whether its binding lets them apply."""
    from testkit.builders import policy, route, service_parent, target

    deny = policy(name="deny", ns="shop", targetRefs=[target("Service", "s")], action="DENY", rules=[{}])
    rt = route(name="rt", ns="shop", parents=[service_parent("s")])
    bound = walk(consumer("Service", "s", "shop", {UW: "wp"}), WP, deny, rt)
    z = [(s.rule, s.ok, s.text) for s in bound.steps if s.rule in ("Z3", "Z9")]
    assert z == [
        ("Z3", True, "AuthorizationPolicy shop/deny (fail-open) targets it: applies at waypoint shop/wp"),
        ("Z9", True, "HTTPRoute shop/rt targets it: applies at waypoint shop/wp"),
    ]
    unbound = walk(consumer("Service", "s", "shop"), WP, deny)
    (step,) = [s for s in unbound.steps if s.rule == "Z3"]
    assert step.ok is False and "does not apply: neither it nor namespace shop has istio.io/use-waypoint" in step.text
