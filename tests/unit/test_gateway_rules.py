"""Gateway and GatewayClass findings, table-driven (docs/rules.md A1 L3, A2 W1-W5, A4 P1-P3, B1)."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.builders import MESH, engine, gateway, gateway_class, judge, ns_labels, request, state

SELECTOR_NS = {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "consumer"}}}

# (id citing the rule, gateway kwargs, state objects, expected {code: severity})
CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, str]]] = [
    ("W4 canonical waypoint is clean", {"labels": {"istio.io/waypoint-for": "service"}}, [], {}),
    ("L3 label service", {"labels": {"istio.io/waypoint-for": "service"}}, [], {}),
    ("L3 label workload", {"labels": {"istio.io/waypoint-for": "workload"}}, [], {}),
    ("L3 label all", {"labels": {"istio.io/waypoint-for": "all"}}, [], {}),
    (
        "L3 label none accepts nothing",
        {"labels": {"istio.io/waypoint-for": "none"}},
        [],
        {"WaypointAcceptsNoTraffic": "warn"},
    ),
    (
        "L3 capitalised Service is invalid",
        {"labels": {"istio.io/waypoint-for": "Service"}},
        [],
        {"InvalidWaypointFor": "deny"},
    ),
    (
        "L3 empty label is invalid, no fallback",
        {"labels": {"istio.io/waypoint-for": ""}},
        [],
        {"InvalidWaypointFor": "deny"},
    ),
    ("L3 unknown value", {"labels": {"istio.io/waypoint-for": "services"}}, [], {"InvalidWaypointFor": "deny"}),
    (
        "L3 class label none applies without own label",
        {},
        [gateway_class("istio-waypoint", {"istio.io/waypoint-for": "none"})],
        {"WaypointAcceptsNoTraffic": "warn"},
    ),
    (
        "L3 gateway label beats class label",
        {"labels": {"istio.io/waypoint-for": "service"}},
        [gateway_class("istio-waypoint", {"istio.io/waypoint-for": "none"})],
        {},
    ),
    (
        "L3 invalid class label makes gateway accept nothing",
        {},
        [gateway_class("istio-waypoint", {"istio.io/waypoint-for": "bogus"})],
        {"WaypointAcceptsNoTraffic": "warn"},
    ),
    ("W2 name must be DNS-1035 (leading digit)", {"name": "1waypoint"}, [], {"InvalidWaypointName": "deny"}),
    ("W2 name must be DNS-1035 (dot)", {"name": "way.point"}, [], {"InvalidWaypointName": "deny"}),
    ("W2 name over 63 chars", {"name": "w" * 64}, [], {"InvalidWaypointName": "deny"}),
    ("W2 name of 63 chars is fine", {"name": "w" * 63}, [], {}),
    ("W2 none is reserved", {"name": "none"}, [], {"InvalidWaypointName": "deny"}),
    (
        "W3 lowercase hbone is not the mesh listener",
        {"listeners": [{**MESH, "protocol": "hbone"}]},
        [],
        {"MissingMeshListener": "deny", "UnexpectedListener": "warn"},
    ),
    (
        "W3 wrong port",
        {"listeners": [{**MESH, "port": 15009}]},
        [],
        {"MissingMeshListener": "deny", "UnexpectedListener": "warn"},
    ),
    (
        "W3 extra HTTP listener is a warning",
        {"listeners": [MESH, {"name": "http", "port": 80, "protocol": "HTTP"}]},
        [],
        {"UnexpectedListener": "warn"},
    ),
    (
        "W3 mesh listener need not be first",
        {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}, MESH]},
        [],
        {"UnexpectedListener": "warn"},
    ),
    (
        "P3 Selector without selector denies everyone",
        {"routes": {"from": "Selector"}},
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    ("P3 Selector {} matches all and is valid", {"routes": {"from": "Selector", "selector": {}}}, [], {}),
    ("P3 seed's Selector is valid", {"routes": SELECTOR_NS}, [], {}),
    (
        "P3 unknown operator",
        {
            "routes": {
                "from": "Selector",
                "selector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]},
            }
        },
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P3 In without values",
        {
            "routes": {
                "from": "Selector",
                "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": []}]},
            }
        },
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P3 Exists with values",
        {
            "routes": {
                "from": "Selector",
                "selector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]},
            }
        },
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P3 bad key",
        {"routes": {"from": "Selector", "selector": {"matchLabels": {"bad key!": "x"}}}},
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P3 bad matchLabels value",
        {"routes": {"from": "Selector", "selector": {"matchLabels": {"team": "a b"}}}},
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P3 valid NotIn/DoesNotExist",
        {
            "routes": {
                "from": "Selector",
                "selector": {
                    "matchExpressions": [
                        {"key": "team", "operator": "NotIn", "values": ["x"]},
                        {"key": "env", "operator": "DoesNotExist"},
                    ]
                },
            }
        },
        [],
        {},
    ),
    (
        "P1 only the mesh listener's routes count",
        {
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Selector"}}},
                MESH,
            ]
        },
        [],
        {"UnexpectedListener": "warn"},
    ),
    (
        "W5 dataplane-mode on a waypoint",
        {"labels": {"istio.io/dataplane-mode": "ambient"}},
        [],
        {"WaypointPodLabelOverride": "warn"},
    ),
    (
        "W5 sidecar inject on a waypoint",
        {"labels": {"sidecar.istio.io/inject": "true"}},
        [],
        {"WaypointPodLabelOverride": "warn"},
    ),
    (
        "B1 non-waypoint Gateway without the label is out of scope",
        {"cls": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        [],
        {},
    ),
    (
        "B1 any Gateway carrying waypoint-for is in scope",
        {
            "cls": "acme-waypoint",
            "labels": {"istio.io/waypoint-for": "everything"},
            "listeners": [{"name": "x", "port": 15008, "protocol": "HBONE"}],
        },
        [],
        {"InvalidWaypointFor": "deny"},
    ),
    (
        "W2/W3 apply only to istio-waypoint",
        {
            "cls": "acme-waypoint",
            "name": "Odd.Name",
            "labels": {"istio.io/waypoint-for": "service"},
            "listeners": [{"name": "x", "port": 80, "protocol": "HTTP"}],
        },
        [],
        {},
    ),
]


@pytest.mark.parametrize(("gw_kwargs", "objects", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gateway_findings(gw_kwargs: dict[str, Any], objects: list[dict[str, Any]], expected: dict[str, str]) -> None:
    assert judge(engine(state(*objects)), gateway(**gw_kwargs)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("service", {}),
        ("workload", {}),
        ("all", {}),
        ("none", {}),
        ("", {"InvalidWaypointFor": "deny"}),
        ("Service", {"InvalidWaypointFor": "deny"}),
        ("ALL", {"InvalidWaypointFor": "deny"}),
    ],
)
def test_gateway_class_waypoint_for(value: str, expected: dict[str, str]) -> None:
    """L3: the GatewayClass label is judged like the Gateway's."""
    assert judge(engine(), gateway_class("istio-waypoint", {"istio.io/waypoint-for": value})) == expected


def test_generate_name_gateway_skips_the_name_check() -> None:
    """B2: with generateName the name is still empty at admission."""
    gw = gateway()
    del gw["metadata"]["name"]
    gw["metadata"]["generateName"] = "waypoint-"
    assert judge(engine(), gw) == {}


def test_unsynced_class_lookup_does_not_guess() -> None:
    """Without synced state the class label is unknown: no WaypointAcceptsNoTraffic guess."""
    idx = state(gateway_class("istio-waypoint", {"istio.io/waypoint-for": "none"}))
    assert judge(engine(idx, synced=False), gateway()) == {}


def test_message_names_object_and_fix_and_is_short() -> None:
    v = engine().validate(request(gateway(listeners=[{**MESH, "protocol": "hbone"}])))
    deny = next(j for j in v.judged if j.code == "MissingMeshListener")
    assert "default/waypoint" in deny.finding.message
    assert "HBONE" in deny.finding.message and "'hbone'" in deny.finding.message
    assert deny.finding.field == "spec.listeners"
    assert len(deny.line()) <= 160


IB = "ambient.istio.io/waypoint-inbound-binding"
PROXY_LISTENER = {"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"}


def _gw(
    name: str = "waypoint",
    cls: str = "istio-waypoint",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    infra: dict[str, str] | None = None,
    listeners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    gw = gateway(name, cls=cls, labels=labels, listeners=listeners)
    if annotations:
        gw["metadata"]["annotations"] = annotations
    if infra is not None:
        gw["spec"]["infrastructure"] = {"labels": infra}
    return gw


OVERRIDE = "gateway.istio.io/name-override"
# W2 (classes by controller, name-override), W5 (infrastructure labels), W6 (sandwiches)
REVISED: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, str]]] = [
    (
        "W2 name-override makes a dotted Gateway name deployable",
        _gw("reviews.v2", annotations={OVERRIDE: "reviews-v2"}),
        [],
        {},
    ),
    (
        "W2 the name-override itself must be a DNS-1035 label",
        _gw("waypoint", annotations={OVERRIDE: "Bad_Name"}),
        [],
        {"InvalidWaypointName": "deny"},
    ),
    (
        "W2 a class with Istio's mesh controller gets the waypoint rules",
        _gw("way.point", cls="platform-wp"),
        [gateway_class("platform-wp")],
        {"InvalidWaypointName": "deny"},
    ),
    (
        "W2 a third-party controller's class does not",
        _gw("way.point", cls="other", labels={"istio.io/waypoint-for": "service"}),
        [gateway_class("other", controller="example.com/gw")],
        {},
    ),
    (
        "W2 istio-agentgateway-waypoint without its class object",
        _gw("none", cls="istio-agentgateway-waypoint"),
        [],
        {"InvalidWaypointName": "deny"},
    ),
    (
        "W5 infrastructure labels are what is copied, not metadata labels",
        _gw(labels={"istio.io/dataplane-mode": "ambient"}, infra={"team": "a"}),
        [],
        {},
    ),
    (
        "W5 dataplane-mode among the infrastructure labels",
        _gw(infra={"istio.io/dataplane-mode": "ambient"}),
        [],
        {"WaypointPodLabelOverride": "warn"},
    ),
    # P1: the inbound binding, parsed as istiod parses it
    (
        "P1 PROXY/abc is malformed (istiod binds it like PROXY)",
        _gw("ingress", cls="istio", annotations={IB: "PROXY/abc"}, listeners=[PROXY_LISTENER]),
        [],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "P1 an unknown protocol",
        _gw("ingress", cls="istio", annotations={IB: "HTTP/15088"}),
        [],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "P1 a second slash",
        _gw("ingress", cls="istio", annotations={IB: "PROXY/15088/x"}),
        [],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "P1 port 0 is no port",
        _gw("ingress", cls="istio", annotations={IB: "PROXY/0"}, listeners=[PROXY_LISTENER]),
        [],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "P1 a signed port is no number to istiod",
        _gw("ingress", cls="istio", annotations={IB: "PROXY/+15088"}, listeners=[PROXY_LISTENER]),
        [],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "P1 a valid binding that selects no listener",
        _gw(annotations={IB: "PROXY/15088"}),
        [],
        {"InboundBindingUnmatched": "warn"},
    ),
    ("P1 NONE without a port selects nothing by design", _gw(annotations={IB: "NONE"}), [], {}),
    (
        "P1 the bound listener is expected, not unexpected",
        _gw(annotations={IB: "PROXY/15088"}, listeners=[MESH, PROXY_LISTENER]),
        [],
        {},
    ),
    (
        "P1 without a port, PROXY binds the istio.io/PROXY listener",
        _gw(annotations={IB: "PROXY"}, listeners=[MESH, PROXY_LISTENER]),
        [],
        {},
    ),
    (
        "P1 only the consulted listener's allowedRoutes are judged (the bound one)",
        _gw(
            annotations={IB: "PROXY/15088"},
            listeners=[{**MESH, "allowedRoutes": {"namespaces": {"from": "Selector"}}}, PROXY_LISTENER],
        ),
        [],
        {},
    ),
    (
        "P1 an invalid bound listener's allowedRoutes",
        _gw(
            annotations={IB: "PROXY/15088"},
            listeners=[MESH, {**PROXY_LISTENER, "allowedRoutes": {"namespaces": {"from": "Selector"}}}],
        ),
        [],
        {"InvalidAllowedRoutes": "deny"},
    ),
    (
        "P1 the class's binding applies when the Gateway has none",
        _gw(labels={"istio.io/waypoint-for": "service"}, cls="sandwiched"),
        [gateway_class("sandwiched", annotations={IB: "PROXY/15088"})],
        {"InboundBindingUnmatched": "warn"},
    ),
    (
        "P1 the Gateway's own binding beats the class's, even when malformed",
        _gw(cls="sandwiched", annotations={IB: "FOO"}),
        [gateway_class("sandwiched", annotations={IB: "PROXY/15088"})],
        {"InvalidInboundBinding": "deny"},
    ),
    (
        "W6 a sandwich ingress in ambient is legitimate",
        _gw("ingress", cls="istio", labels={"istio.io/waypoint-for": "service", "istio.io/dataplane-mode": "ambient"}),
        [],
        {},
    ),
]


@pytest.mark.parametrize(("obj", "objects", "expected"), [c[1:] for c in REVISED], ids=[c[0] for c in REVISED])
def test_revised_gateway_findings(obj: dict[str, Any], objects: list[dict[str, Any]], expected: dict[str, str]) -> None:
    assert judge(engine(state(*objects)), obj) == expected


def test_w5_finding_names_the_infrastructure_field() -> None:
    v = engine().validate(request(_gw(infra={"sidecar.istio.io/inject": "true"})))
    (j,) = v.judged
    assert j.finding.field == "spec.infrastructure.labels[sidecar.istio.io/inject]"


def test_m1_applies_to_every_waypoint_class() -> None:
    """W2/M1: a minimal Gateway of a class with Istio's mesh controller gets the mesh listener too."""
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "wp", "namespace": "default"},
        "spec": {"gatewayClassName": "platform-wp"},
    }
    ops = engine(state(gateway_class("platform-wp"))).mutate(request(gw)).patch
    assert [op["path"] for op in ops] == ["/spec/listeners"]
    assert engine(state(gateway_class("platform-wp", controller="example.com/gw"))).mutate(request(gw)).patch == []


def test_a_gateway_class_with_a_malformed_binding_is_denied() -> None:
    gc = gateway_class("sandwiched", annotations={IB: "PROXY/15088/x"})
    assert judge(engine(), gc) == {"InvalidInboundBinding": "deny"}
    assert judge(engine(), gateway_class("sandwiched", annotations={IB: "PROXY/15088"})) == {}


def test_changing_the_inbound_binding_can_break_consumers() -> None:
    """ConsumersWouldBreak sees P1: dropping the binding moves the consulted listener from the bound
    one (All) back to the mesh listener (Same), which refuses the consumers in other namespaces."""
    from testkit.builders import consumer, ns_labels, verdict_codes

    bound = _gw(
        "wp",
        cls="istio",
        annotations={IB: "PROXY/15088"},
        listeners=[MESH, {**PROXY_LISTENER, "allowedRoutes": {"namespaces": {"from": "All"}}}],
    )
    unbound = {**bound, "metadata": {k: v for k, v in bound["metadata"].items() if k != "annotations"}}
    idx = state(
        ns_labels("blue", {"istio.io/dataplane-mode": "ambient"}),
        bound,
        consumer("Service", "s", "blue", {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "default"}),
    )
    v = engine(idx).validate(request(unbound, "UPDATE", old=bound))
    assert verdict_codes(v).get("ConsumersWouldBreak") == "warn"
    assert engine(idx).validate(request(bound, "UPDATE", old=bound)).judged == []


def test_a_selector_is_validated_once_per_parsed_object_not_per_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile tenant's Gateway (NotIn with 40,000 values) updated with 100 consumers: the
    selector is checked once per version parsed, and each value check is a set lookup (issue 18)."""
    from webhook.core import model

    calls: list[int] = []
    real = model._requirement_problem

    def counting(r: model.Requirement) -> str | None:
        calls.append(1)
        return real(r)

    monkeypatch.setattr(model, "_requirement_problem", counting)
    values = [f"v{i}" for i in range(40_000)]
    routes = {
        "from": "Selector",
        "selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": values}]},
    }
    old = gateway("wp", "infra", labels={"istio.io/waypoint-for": "all"}, routes=routes)
    changed = {
        "from": "Selector",
        "selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": [*values[:-1], "v0"]}]},
    }
    new = gateway("wp", "infra", labels={"istio.io/waypoint-for": "all"}, routes=changed)
    objs = [
        ns_labels(f"n{i}", {"istio.io/dataplane-mode": "ambient", "team": "v39999" if i == 0 else "a"})
        for i in range(100)
    ]
    from testkit.builders import consumer

    consumers = [
        consumer(
            "Service", f"s{i}", f"n{i}", {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "infra"}
        )
        for i in range(100)
    ]
    e = engine(state(old, *objs, *consumers))
    # n1..n99 (team a) stay admitted; n0 (team v39999) was excluded before and is admitted now: nothing breaks
    assert judge(e, new, "UPDATE", old) == {}
    assert len(calls) <= 4, f"{len(calls)} validations for 100 consumers"
