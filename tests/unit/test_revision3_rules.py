"""SPEC revision 3, table-driven: P1 port overflow, W1 with an unknown class, W2 managed waypoints
and name lengths, W5, G1 (Gateway API v1.4-v1.6 fields, ListenerSets) and V2 (ServiceEntries
that need a waypoint). R6's inheritance and opt-out are in tests/unit/test_canary_rules.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testkit.builders import MESH, consumer, engine, gateway, judge, namespace, state

UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
BINDING = "ambient.istio.io/waypoint-inbound-binding"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}
PROXY = {"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"}


def shaped(gw: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A builder Gateway with extra fields: ``annotations``, ``addresses`` (spec), ``status_addresses``,
    ``spec`` (merged), ``infrastructure``."""
    gw = copy.deepcopy(gw)
    if "annotations" in fields:
        gw["metadata"]["annotations"] = fields["annotations"]
    if "addresses" in fields:
        gw["spec"]["addresses"] = fields["addresses"]
    if "status_addresses" in fields:
        gw["status"] = {"addresses": fields["status_addresses"]}
    if "infrastructure" in fields:
        gw["spec"]["infrastructure"] = fields["infrastructure"]
    gw["spec"].update(fields.get("spec", {}))
    return gw


LONG = "w" * 64
GATEWAY_CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("W2 unmanaged (two addresses): a dotted name deploys nothing, no naming rule", shaped(gateway("reviews.v2"), addresses=[{"value": "10.0.0.1"}, {"value": "10.0.0.2"}]), {}),
    ("W2 unmanaged (a Hostname address): no naming rule", shaped(gateway("reviews.v2"), addresses=[{"type": "Hostname", "value": "wp.example.com"}]), {}),
    ("W2 unmanaged (a value-less NamedAddress, G1): no naming rule", shaped(gateway("reviews.v2"), addresses=[{"type": "NamedAddress"}]), {}),
    ("W2 managed (one IPAddress): the naming rule applies", shaped(gateway("reviews.v2"), addresses=[{"value": "10.0.0.1"}]), {"InvalidWaypointName": "deny"}),
    ("W2 a 64-character name never deploys, even with an override", shaped(gateway(LONG), annotations={"gateway.istio.io/name-override": "wp"}), {"InvalidWaypointName": "deny"}),
    ("W2 a 63-character name deploys", gateway("w" * 63), {}),
    ("W5 infrastructure.labels {} copies nothing", shaped(gateway("wp", labels={"istio.io/dataplane-mode": "ambient"}), infrastructure={"labels": {}}), {}),
    ("W5 infrastructure without labels copies metadata.labels", shaped(gateway("wp", labels={"istio.io/dataplane-mode": "ambient"}), infrastructure={}), {"WaypointPodLabelOverride": "warn"}),
    ("P1 a port too large for 32 bits is InvalidInboundBinding", shaped(gateway("wp", listeners=[MESH, PROXY]), annotations={BINDING: "PROXY/99999999999"}), {"InvalidInboundBinding": "deny", "UnexpectedListener": "warn"}),
    ("P1 a port above 65535 is InvalidInboundBinding", shaped(gateway("wp", listeners=[MESH, PROXY]), annotations={BINDING: "PROXY/70000"}), {"InvalidInboundBinding": "deny", "UnexpectedListener": "warn"}),
    ("G1 spec.allowedListeners on a waypoint", shaped(gateway("wp"), spec={"allowedListeners": {"namespaces": {"from": "All"}}}), {"ListenerSetOnWaypoint": "warn"}),
    ("G1 v1.5/v1.6 fields are accepted", shaped(gateway("wp"), spec={"tls": {"frontend": {}}}, infrastructure={"annotations": {f"a{i}": "x" for i in range(16)}}), {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "gw", "expected"), GATEWAY_CASES, ids=[c[0] for c in GATEWAY_CASES])
def test_gateway_rules(case: str, gw: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(state()), gw) == expected


def test_a_long_class_name_never_deploys() -> None:
    cls = "c" * 64
    from testkit.builders import gateway_class

    assert judge(engine(state(gateway_class(cls))), gateway("wp", cls=cls)) == {"InvalidWaypointName": "deny"}


def se(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    }
    obj = consumer("ServiceEntry", name, "shop", labels, spec={**body, **spec})
    return obj


STATE = state(
    namespace("shop", **AMBIENT),
    namespace("other", **AMBIENT),
    gateway("wp", "shop"),
    gateway("wl", "shop", labels={"istio.io/waypoint-for": "workload"}),
    # P1: the PROXY listener admits only its own namespace, the HBONE listener everyone
    shaped(
        gateway("overflow", "shop", listeners=[{**MESH, "allowedRoutes": {"namespaces": {"from": "All"}}}, PROXY]),
        annotations={BINDING: "PROXY/99999999999"},
    ),
    shaped(gateway("unknown", "shop", cls="acme"), status_addresses=[{"type": "NamedAddress", "value": "x"}]),
)

CONSUMER_CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("P1 overflow: the HBONE listener's allowedRoutes admit the other namespace", consumer("Service", "s", "other", {UW: "overflow", UWN: "shop"}), {}),
    ("W1 an unknown class with a lone NamedAddress: NotAWaypoint and WaypointNotReady", consumer("Service", "s", "shop", {UW: "unknown"}), {"NotAWaypoint": "warn", "WaypointNotReady": "warn"}),
    ("V2 a wildcard host without a waypoint", se("wild", hosts=["*.example.com"]), {"ServiceEntryNeedsWaypoint": "warn"}),
    ("V2 DYNAMIC_DNS without a waypoint", se("dyn", resolution="DYNAMIC_DNS"), {"ServiceEntryNeedsWaypoint": "warn"}),
    ("V2 the racing connect strategy without a waypoint", {**se("race"), "metadata": {**se("race")["metadata"], "annotations": {"istio.io/connect-strategy": "RACE_FIRST_TCP_CONNECT"}}}, {"ServiceEntryNeedsWaypoint": "warn"}),
    ("V2 opting out with none", se("wild", {UW: "none"}, hosts=["*.example.com"]), {"ServiceEntryNeedsWaypoint": "warn"}),
    ("V2 bound to a waypoint that serves it", se("wild", {UW: "wp"}, hosts=["*.example.com"]), {}),
    ("V2 a reference that does not resolve", se("wild", {UW: "wl"}, hosts=["*.example.com"]), {"UnsupportedTrafficType": "deny", "ServiceEntryNeedsWaypoint": "warn"}),
    ("V2 an ordinary ServiceEntry needs none", se("plain"), {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "obj", "expected"), CONSUMER_CASES, ids=[c[0] for c in CONSUMER_CASES])
def test_consumer_rules(case: str, obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), obj) == expected


# --- V1: ServiceEntry visibility, from the MeshConfig -------------------------------------------

from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from webhook.cli.commands import main  # noqa: E402
from webhook.core.model import parse_mesh_config  # noqa: E402
from webhook.core.rules.references import visibility_of  # noqa: E402

VISIBILITY = {
    "serviceEntryVisibility": {
        "defaultVisibility": "NAMESPACE",
        "policies": [
            {"visibility": "PUBLIC", "matchingRules": [{"namespaceSelector": {"matchLabels": {"public": "yes"}}}]},
            {"visibility": "NONE", "matchingRules": [{"namespaceSelector": {"matchExpressions": [{"key": "x", "operator": "in"}]}}]},
        ],
    }
}  # fmt: skip


def v1_state(mesh: dict[str, Any] | None) -> Any:
    index = state(
        namespace("shop", **AMBIENT),
        namespace("open", **AMBIENT, public="yes"),
        namespace("infra", **AMBIENT, **{UW: "egress", UWN: "edge"}),
        gateway("egress", "edge", routes={"from": "All"}),
        gateway("local", "shop"),
    )
    index.mesh = parse_mesh_config(mesh) if mesh is not None else None
    return index


V1_CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any], dict[str, str]]] = [
    ("V1 NAMESPACE visibility forbids a waypoint in another namespace", VISIBILITY, se("s", {UW: "egress", UWN: "edge"}), {"CrossNamespaceWaypointForbidden": "deny"}),
    ("V1 a waypoint in its own namespace is fine", VISIBILITY, se("s", {UW: "local"}), {}),
    ("V1 the first matching policy (PUBLIC) wins over the default", VISIBILITY, {**se("s", {UW: "egress", UWN: "edge"}), "metadata": {"name": "s", "namespace": "open", "labels": {UW: "egress", UWN: "edge"}}}, {}),
    ("V1 inherited from the namespace: a warning", VISIBILITY, {**se("s"), "metadata": {"name": "s", "namespace": "infra"}}, {"CrossNamespaceWaypointForbidden": "warn"}),
    ("V1 inert without serviceEntryVisibility", {"defaultConfig": {}}, se("s", {UW: "egress", UWN: "edge"}), {}),
    ("V1 silent when the MeshConfig is unknown", None, se("s", {UW: "egress", UWN: "edge"}), {}),
    ("V1 a Service is never judged by it", VISIBILITY, consumer("Service", "svc", "shop", {UW: "egress", UWN: "edge"}), {}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "mesh", "obj", "expected"), V1_CASES, ids=[c[0] for c in V1_CASES])
def test_service_entry_visibility(
    case: str, mesh: dict[str, Any] | None, obj: dict[str, Any], expected: dict[str, str]
) -> None:
    assert judge(engine(v1_state(mesh)), obj) == expected


def test_an_unparsable_rule_never_matches() -> None:
    """The NONE policy's selector uses 'in' (istiod's operators are case-sensitive): it never
    matches, so a namespace labelled x falls through to the default."""
    mesh = parse_mesh_config(VISIBILITY)
    assert visibility_of(mesh, {"x": "1"}) == "NAMESPACE"
    assert visibility_of(mesh, {"public": "yes", "x": "1"}) == "PUBLIC"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    docs = [
        namespace("shop", **AMBIENT),
        gateway("egress", "edge", routes={"from": "All"}),
        se("s", {UW: "egress", UWN: "edge"}),
    ]
    (tmp_path / "objects.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path


def test_check_reads_the_mesh_config_flag_or_the_configmap(
    files: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(files)]) == 0
    assert "note: ServiceEntry visibility (V1) not checked: no MeshConfig" in capsys.readouterr().out
    mesh_file = tmp_path_factory.mktemp("mesh") / "mesh.yaml"
    mesh_file.write_text(yaml.safe_dump(VISIBILITY))
    assert main(["check", "--mesh-config", str(mesh_file), str(files)]) == 1
    assert "CrossNamespaceWaypointForbidden" in capsys.readouterr().out
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump(VISIBILITY)},
    }
    (files / "istio.yaml").write_text(yaml.safe_dump(configmap))
    assert main(["audit", "--state", str(files)]) == 1
    assert "CrossNamespaceWaypointForbidden" in capsys.readouterr().out
    assert main(["explain", "se/s", "-n", "shop", "--state", str(files)]) == 0
    assert "FAIL V1    visibility NAMESPACE" in capsys.readouterr().out


def test_bad_mesh_yaml_is_one_logged_error_never_a_failure(
    files: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "serviceEntryVisibility: [unclosed"},
    }
    (files / "istio.yaml").write_text(yaml.safe_dump(configmap))
    assert main(["check", str(files)]) == 0
    assert "the MeshConfig is not YAML" in caplog.text
    assert "V1) not checked" in capsys.readouterr().out


def test_a_namespace_relabel_that_hides_its_service_entries_is_reported() -> None:
    """V1 impact: dropping the label of a PUBLIC policy turns the namespace's ServiceEntries to
    NAMESPACE, unbinding the one whose waypoint is elsewhere (reported like ConsumersWouldBreak)."""
    index = v1_state(VISIBILITY)
    cross = {
        **se("cross", {UW: "egress", UWN: "edge"}),
        "metadata": {"name": "cross", "namespace": "open", "labels": {UW: "egress", UWN: "edge"}},
    }
    index.apply(cross)
    old = namespace("open", **AMBIENT, public="yes")
    new = namespace("open", **AMBIENT)
    assert judge(engine(index), new, "UPDATE", old) == {"ConsumersWouldBreak": "warn"}
    assert judge(engine(index, preset="strict"), new, "UPDATE", old) == {"ConsumersWouldBreak": "deny"}
    assert judge(engine(index), old, "UPDATE", new) == {}, "becoming PUBLIC unbinds nothing"
