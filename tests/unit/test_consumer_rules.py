"""Consumer findings, table-driven (docs/rules.md A1 L1/L2/L4/L5, A3 R0-R5, A4 P1-P4, B1 consumer table)."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.builders import consumer, engine, gateway, gateway_class, judge, namespace, ns_labels, state, workload

UW = "istio.io/use-waypoint"
UWN = "istio.io/use-waypoint-namespace"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}


def shaped(
    gw: dict[str, Any],
    annotations: dict[str, str] | None = None,
    addresses: list[dict[str, str]] | None = None,
    infra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A builder Gateway with the fields the W1/W5/W6 rows need."""
    if annotations:
        gw["metadata"]["annotations"] = annotations
    if addresses is not None:
        gw["status"] = {"addresses": addresses}
    if infra is not None:
        gw["spec"]["infrastructure"] = {"labels": infra}
    return gw


STATE = state(
    namespace("default", **AMBIENT),
    ns_labels("blue", {**AMBIENT, "team": "blue"}),
    ns_labels("red", {**AMBIENT, "team": "red"}),
    namespace("plain"),
    ns_labels("svcns", {**AMBIENT, UW: "svc-wp"}),
    ns_labels("wlns", {**AMBIENT, UW: "wl-wp"}),
    ns_labels("ghostns", {**AMBIENT, UW: "ghost"}),
    ns_labels("crossns", {**AMBIENT, UW: "sel", UWN: "infra", "team": "red"}),
    ns_labels("optout", {**AMBIENT, UW: "none"}),
    ns_labels("typons", {**AMBIENT, UW: "None"}),
    ns_labels("emptyuwn", {**AMBIENT, UW: "shared", UWN: ""}),
    gateway_class("acme", {"istio.io/waypoint-for": "workload"}),
    gateway_class("thirdparty", controller="example.com/gateway-controller"),
    gateway_class(
        "boundclass",
        controller="example.com/gateway-controller",
        annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"},
    ),
    ns_labels("crashns", {**AMBIENT, UW: "badsel", UWN: "infra"}),
    gateway("thirdwp", "default", cls="thirdparty", labels={"istio.io/waypoint-for": "all"}),
    # P1: an inbound binding decides whose allowedRoutes count
    shaped(
        gateway(
            "boundall",
            "infra",
            cls="istio",
            listeners=[
                {"name": "mesh", "port": 15008, "protocol": "HBONE"},
                {
                    "name": "proxy",
                    "port": 15088,
                    "protocol": "istio.io/PROXY",
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                },
            ],
        ),
        annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"},
    ),
    shaped(
        gateway(
            "boundsame",
            "infra",
            cls="istio",
            listeners=[
                {"name": "mesh", "port": 15008, "protocol": "HBONE", "allowedRoutes": {"namespaces": {"from": "All"}}},
                {"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"},
            ],
        ),
        annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"},
    ),
    shaped(
        gateway(
            "badport",
            "infra",
            cls="istio",
            listeners=[
                {
                    "name": "proxy",
                    "port": 15088,
                    "protocol": "istio.io/PROXY",
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
            ],
        ),
        annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/abc"},
    ),
    # W6 sandwiches (an ingress of class istio), W1 addresses
    shaped(gateway("sandwich", "default", cls="istio", labels={"istio.io/dataplane-mode": "ambient"})),
    shaped(
        gateway("bound", "default", cls="istio"), annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY"}
    ),
    gateway("boundclasswp", "default", cls="boundclass"),
    shaped(
        gateway("metaonly", "default", cls="istio", labels={"istio.io/dataplane-mode": "ambient"}),
        infra={"team": "edge"},
    ),
    shaped(gateway("named", "default"), addresses=[{"type": "NamedAddress", "value": "wp-addr"}]),
    shaped(gateway("hostwp", "default"), addresses=[{"type": "Hostname", "value": "wp.default.svc.cluster.local"}]),
    shaped(gateway("badip", "default"), addresses=[{"type": "IPAddress", "value": "not-an-ip"}]),
    gateway("agentwp", "default", cls="istio-agentgateway-waypoint"),
    gateway("waypoint", "default", labels={"istio.io/waypoint-for": "service"}),
    gateway("wl", "default", labels={"istio.io/waypoint-for": "workload"}),
    gateway("allwp", "default", labels={"istio.io/waypoint-for": "all"}),
    gateway("nonewp", "default", labels={"istio.io/waypoint-for": "none"}),
    gateway("notready", "default", ready=False),
    gateway("ingress", "default", cls="istio", listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
    gateway("acmewp", "default", cls="acme"),
    gateway("svc-wp", "svcns"),
    gateway("wl-wp", "wlns", labels={"istio.io/waypoint-for": "workload"}),
    gateway("shared", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "All"}),
    gateway(
        "sel",
        "infra",
        labels={"istio.io/waypoint-for": "all"},
        routes={"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}},
    ),
    gateway("same", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Same"}),
    gateway("nosel", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Selector"}),
    gateway("emptysel", "infra", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Selector", "selector": {}}),
    gateway(
        "badsel",
        "infra",
        labels={"istio.io/waypoint-for": "all"},
        routes={"from": "Selector", "selector": {"matchExpressions": [{"key": "t", "operator": "Equals"}]}},
    ),
    gateway(
        "exprsel",
        "infra",
        labels={"istio.io/waypoint-for": "all"},
        routes={
            "from": "Selector",
            "selector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": ["blue", "green"]},
                    {"key": "frozen", "operator": "DoesNotExist"},
                ]
            },
        },
    ),
)


def svc(labels: dict[str, str], ns: str = "default", **kw: Any) -> dict[str, Any]:
    return consumer("Service", "svc", ns, labels, **kw)


def pod(labels: dict[str, str], ns: str = "default", **kw: Any) -> dict[str, Any]:
    return consumer("Pod", "pod", ns, labels, **kw)


def se(labels: dict[str, str], ns: str = "default", endpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": ["example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "DNS",
    }
    if endpoints is not None:
        spec["endpoints"] = endpoints
    return consumer("ServiceEntry", "se", ns, labels, spec=spec)


def we(labels: dict[str, str] | None, spec_labels: dict[str, str] | None = None, ns: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"address": "10.1.1.1"}
    if spec_labels is not None:
        spec["labels"] = spec_labels
    return consumer("WorkloadEntry", "we", ns, labels, spec=spec)


CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    # --- L1: syntax of use-waypoint
    ("L1 valid service reference", svc({UW: "waypoint"}), {}),
    ("L1 exactly none opts out", svc({UW: "none"}), {}),
    ("L1 None is a name, not the opt-out", svc({UW: "None"}), {"InvalidUseWaypoint": "deny"}),
    ("L1 NONE is a name, not the opt-out", pod({UW: "NONE"}), {"InvalidUseWaypoint": "deny"}),
    ("L1 empty value", svc({UW: ""}), {"InvalidUseWaypoint": "deny"}),
    ("L1 not DNS-1035", svc({UW: "my_waypoint"}), {"InvalidUseWaypoint": "deny"}),
    # B1 (revised): InvalidUseWaypoint means "no Gateway can have this name" (DNS-1123 subdomain);
    # a valid name that no waypoint can deploy under is the Gateway's problem (W2), not the reference's.
    ("L1 a leading digit is a valid Gateway name: looked up", svc({UW: "1wp"}), {"WaypointNotFound": "warn"}),
    ("L1 a dotted name is a valid Gateway name: looked up", svc({UW: "reviews.v2"}), {"WaypointNotFound": "warn"}),
    ("L1 uppercase is no Gateway name", svc({UW: "Waypoint"}), {"InvalidUseWaypoint": "deny"}),
    ("L1 an empty label between dots", svc({UW: "a..b"}), {"InvalidUseWaypoint": "deny"}),
    ("L1 longer than 253 characters", svc({UW: "a" * 254}), {"InvalidUseWaypoint": "deny"}),
    ("L1 annotation is ignored by Istio", svc({}, annotations={UW: "waypoint"}), {"UseWaypointAnnotation": "warn"}),
    (
        "L1 namespace annotation too",
        svc({UW: "waypoint"}, annotations={UWN: "infra"}),
        {"UseWaypointAnnotation": "warn"},
    ),
    # --- L2: use-waypoint-namespace
    ("L2 orphan namespace label", svc({UWN: "infra"}), {"OrphanUseWaypointNamespace": "warn"}),
    ("L2 namespace label with none is orphan", svc({UW: "none", UWN: "infra"}), {"OrphanUseWaypointNamespace": "warn"}),
    ("L2 empty namespace label is invalid", svc({UW: "shared", UWN: ""}), {"InvalidUseWaypointNamespace": "deny"}),
    ("L2 bad namespace label", svc({UW: "shared", UWN: "Infra"}), {"InvalidUseWaypointNamespace": "deny"}),
    ("L2 cross-namespace reference resolves there", svc({UW: "shared", UWN: "infra"}), {}),
    ("L2 namespace label without it looks in own namespace", svc({UW: "shared"}), {"WaypointNotFound": "warn"}),
    # --- W1 / B1 resolution outcomes
    ("W1 missing waypoint is a warning", svc({UW: "ghost"}), {"WaypointNotFound": "warn"}),
    ("W1 no addresses yet", svc({UW: "notready"}), {"WaypointNotReady": "warn"}),
    ("W2 a class with Istio's mesh controller is a waypoint class", pod({UW: "acmewp"}), {}),
    ("W2 a third-party class is not a waypoint class", pod({UW: "thirdwp"}), {"NotAWaypoint": "warn"}),
    ("W2 istio-agentgateway-waypoint counts without its class object", svc({UW: "agentwp"}), {}),
    ("W6 sandwich: an ingress whose pods are in ambient", svc({UW: "sandwich"}), {}),
    ("W6 sandwich: an ingress with an inbound binding", svc({UW: "bound"}), {}),
    ("W6 sandwich: its class carries the inbound binding", svc({UW: "boundclasswp"}), {}),
    ("W6 infrastructure labels decide, not metadata labels", svc({UW: "metaonly"}), {"NotAWaypoint": "warn"}),
    (
        "P1 the bound listener admits everyone, the mesh listener only its namespace",
        svc({UW: "boundall", UWN: "infra"}, ns="blue"),
        {},
    ),
    (
        "P1 the bound listener's Same wins over the mesh listener's All",
        svc({UW: "boundsame", UWN: "infra"}, ns="blue"),
        {"AttachmentDenied": "deny"},
    ),
    (
        "P1 PROXY/abc binds like PROXY: the istio.io/PROXY listener decides",
        svc({UW: "badport", UWN: "infra"}, ns="blue"),
        {},
    ),
    ("W1 only a NamedAddress: bound, but traffic bypasses it", svc({UW: "named"}), {"WaypointNotReady": "warn"}),
    ("W1 a Hostname address is usable", svc({UW: "hostwp"}), {}),
    ("W1 an IPAddress that does not parse is not usable", svc({UW: "badip"}), {"WaypointNotReady": "warn"}),
    ("W1 ingress gateway is not a waypoint", svc({UW: "ingress"}), {"NotAWaypoint": "warn"}),
    # --- R3: traffic type with own label
    ("R3 Service on workload waypoint: no fallback", svc({UW: "wl"}), {"UnsupportedTrafficType": "deny"}),
    ("R3 Service on all", svc({UW: "allwp"}), {}),
    ("R3 Service on none waypoint", svc({UW: "nonewp"}), {"UnsupportedTrafficType": "deny"}),
    ("R3 Pod on service waypoint", pod({UW: "waypoint"}), {"UnsupportedTrafficType": "deny"}),
    ("R3 Pod on workload waypoint", pod({UW: "wl"}), {}),
    ("R3 Pod on all waypoint", pod({UW: "allwp"}), {}),
    ("R3 ServiceEntry on workload waypoint", se({UW: "wl"}), {"UnsupportedTrafficType": "deny"}),
    ("R3 WorkloadEntry on service waypoint", we({UW: "waypoint"}), {"UnsupportedTrafficType": "deny"}),
    ("R3/L3 class label decides waypoint-for", svc({UW: "acmewp"}), {"UnsupportedTrafficType": "deny"}),
    # --- R1/R2: own label never falls back; inheritance is warnings only
    (
        "R1 Service with its own workload-only waypoint in a service-waypoint namespace",
        svc({UW: "wl-wp"}, ns="wlns"),
        {"UnsupportedTrafficType": "deny"},
    ),
    ("R2 Service inherits a working namespace waypoint", svc({}, ns="svcns"), {}),
    ("R2 Pod inheriting a service-only namespace waypoint is fine", pod({}, ns="svcns"), {}),
    (
        "R2 Service inheriting a workload-only namespace waypoint warns",
        svc({}, ns="wlns"),
        {"UnsupportedTrafficType": "warn"},
    ),
    ("R3 inherited workload mismatch is silent", pod({}, ns="svcns"), {}),
    ("R2 inherited missing waypoint warns", svc({}, ns="ghostns"), {"WaypointNotFound": "warn"}),
    ("R2 inherited attachment denial warns", svc({}, ns="crossns"), {"AttachmentDenied": "warn"}),
    ("R2 namespace none stops inheritance", svc({}, ns="optout"), {}),
    ("L1 object none stops inheritance", svc({UW: "none"}, ns="ghostns"), {}),
    (
        "R1 own label in a namespace with a broken waypoint is judged alone",
        svc({UW: "svc-wp"}, ns="ghostns"),
        {"WaypointNotFound": "warn"},
    ),
    # --- P1-P4: permissions, checked against the consumer's namespace
    ("P3 from All", svc({UW: "shared", UWN: "infra"}, ns="red"), {}),
    ("P3 from Same denies other namespaces", svc({UW: "same", UWN: "infra"}), {"AttachmentDenied": "deny"}),
    ("P3 Selector admits matching namespace", svc({UW: "sel", UWN: "infra"}, ns="blue"), {}),
    (
        "P3 Selector refuses non-matching namespace",
        svc({UW: "sel", UWN: "infra"}, ns="red"),
        {"AttachmentDenied": "deny"},
    ),
    (
        "P3 Selector without selector matches nothing",
        svc({UW: "nosel", UWN: "infra"}, ns="blue"),
        {"AttachmentDenied": "deny"},
    ),
    ("P3 Selector {} matches all", svc({UW: "emptysel", UWN: "infra"}, ns="red"), {}),
    ("P3 matchExpressions In + DoesNotExist", svc({UW: "exprsel", UWN: "infra"}, ns="blue"), {}),
    ("P3 matchExpressions refuse", svc({UW: "exprsel", UWN: "infra"}, ns="red"), {"AttachmentDenied": "deny"}),
    (
        "A5 a reference to an unevaluable selector crashes istiod: deny",
        svc({UW: "badsel", UWN: "infra"}, ns="blue"),
        {"UnevaluableAllowedRoutes": "deny"},
    ),
    ("A5 denied even when inherited", svc({}, ns="crashns"), {"UnevaluableAllowedRoutes": "deny"}),
    (
        "P4 unknown namespace has only its name label",
        svc({UW: "sel", UWN: "infra"}, ns="brandnew"),
        {"AttachmentDenied": "deny", "NotCaptured": "warn"},
    ),
    # --- R4: ServiceEntry endpoints and WorkloadEntry labels
    (
        "R4 ServiceEntry endpoint binds a workload waypoint",
        se({}, endpoints=[{"address": "10.0.0.1", "labels": {UW: "wl"}}]),
        {},
    ),
    (
        "R4 ServiceEntry endpoint on a service waypoint",
        se({}, endpoints=[{"address": "10.0.0.1", "labels": {UW: "waypoint"}}]),
        {"UnsupportedTrafficType": "deny"},
    ),
    (
        "R4 ServiceEntry own label is its service waypoint",
        se({UW: "waypoint"}, endpoints=[{"address": "10.0.0.1", "labels": {UW: "wl"}}]),
        {},
    ),
    (
        "R4 endpoint label syntax is checked",
        se({}, endpoints=[{"address": "10.0.0.1", "labels": {UW: "None"}}]),
        {"InvalidUseWaypoint": "deny"},
    ),
    ("R4 WorkloadEntry spec.labels are read", we(None, {UW: "waypoint"}), {"UnsupportedTrafficType": "deny"}),
    ("R4 WorkloadEntry metadata.labels win over spec.labels", we({UW: "wl"}, {UW: "waypoint"}), {}),
    # --- R0: exclusions
    ("R0 waypoint's own Service", svc({UW: "None", "gateway.istio.io/managed": "istio.io-mesh-controller"}), {}),
    ("R0 east-west Service", svc({UW: "ghost", "gateway.istio.io/managed": "istio.io-eastwest-controller"}), {}),
    ("R0 ExternalName Service", svc({UW: "None"}, spec={"type": "ExternalName", "externalName": "x.example"}), {}),
    ("R0 waypoint instance Pod", pod({UW: "None", "gateway.networking.k8s.io/gateway-name": "waypoint"}), {}),
    (
        "R0 the pods of a Gateway of any class are its instances",
        pod({UW: "None", "gateway.networking.k8s.io/gateway-name": "ingress"}),
        {},
    ),
    ("R0 so are its WorkloadEntries", we({UW: "None", "gateway.networking.k8s.io/gateway-name": "ingress"}), {}),
    (
        "R0 a gateway-name naming no Gateway is no instance",
        pod({UW: "None", "gateway.networking.k8s.io/gateway-name": "ghost"}),
        {"InvalidUseWaypoint": "deny"},
    ),
    # --- L4, L5
    ("L4 ingress-use-waypoint true", svc({"istio.io/ingress-use-waypoint": "true"}), {}),
    (
        "L4 ingress-use-waypoint True is read as true but warned",
        svc({"istio.io/ingress-use-waypoint": "True"}),
        {"InvalidIngressUseWaypoint": "warn"},
    ),
    (
        "L4 ingress-use-waypoint yes is false",
        svc({"istio.io/ingress-use-waypoint": "yes"}),
        {"InvalidIngressUseWaypoint": "warn"},
    ),
    ("L5 bad dataplane-mode on Pod", pod({"istio.io/dataplane-mode": "Ambient"}), {"InvalidDataplaneMode": "warn"}),
    (
        "L5 Pod in a non-ambient namespace is not captured",
        pod({UW: "shared", UWN: "infra"}, ns="plain"),
        {"NotCaptured": "warn"},
    ),
    ("L5 Service in a non-ambient namespace", svc({UW: "shared", UWN: "infra"}, ns="plain"), {"NotCaptured": "warn"}),
    # R2 (revised): an invalid namespace value is still looked up as a name and finds nothing
    ("R2 a Service in a namespace labelled None: not found", svc({}, ns="typons"), {"WaypointNotFound": "warn"}),
    ("R2 an empty namespace use-waypoint-namespace: not found", svc({}, ns="emptyuwn"), {"WaypointNotFound": "warn"}),
    ("L5 Pod opting out of ambient", pod({UW: "wl", "istio.io/dataplane-mode": "none"}), {"NotCaptured": "warn"}),
    ("L5 Pod opting in itself", pod({UW: "wl", "istio.io/dataplane-mode": "ambient"}, ns="default"), {}),
    (
        "L5 hostNetwork Pod is never captured",
        pod({UW: "wl"}, spec={"hostNetwork": True, "containers": []}),
        {"NotCaptured": "warn"},
    ),
    (
        "L5 a Pod with a sidecar is never captured",
        pod({UW: "wl"}, annotations={"sidecar.istio.io/status": "{}"}),
        {"NotCaptured": "warn"},
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_consumer_findings(obj: dict[str, Any], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), obj) == expected


# --- Namespaces are judged with their new labels (B1) ---------------------------------------

NS_CASES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("seed: label default with its waypoint", {**AMBIENT, UW: "waypoint"}, {}),
    ("namespace waypoint for workload only", {**AMBIENT, UW: "wl"}, {"NamespaceWaypointTrafficType": "warn"}),
    ("namespace waypoint for none", {**AMBIENT, UW: "nonewp"}, {"NamespaceWaypointTrafficType": "warn"}),
    ("namespace waypoint for all", {**AMBIENT, UW: "allwp"}, {}),
    ("namespace not ambient", {UW: "waypoint"}, {"NotCaptured": "warn"}),
    ("namespace None typo", {**AMBIENT, UW: "None"}, {"InvalidUseWaypoint": "deny"}),
    ("namespace bad dataplane-mode", {"istio.io/dataplane-mode": "on"}, {"InvalidDataplaneMode": "warn"}),
]


@pytest.mark.parametrize(("labels", "expected"), [c[1:] for c in NS_CASES], ids=[c[0] for c in NS_CASES])
def test_namespace_findings(labels: dict[str, str], expected: dict[str, str]) -> None:
    assert judge(engine(STATE), ns_labels("default", labels)) == expected


def test_namespace_is_judged_with_new_labels_adding_the_selector_label() -> None:
    """P4/B1: one request may add the selector label and use-waypoint together."""
    e = engine(STATE)
    without = ns_labels("red", {**AMBIENT, UW: "sel", UWN: "infra"})
    with_label = ns_labels("red", {**AMBIENT, UW: "sel", UWN: "infra", "team": "blue"})
    assert judge(e, without) == {"AttachmentDenied": "deny"}
    assert judge(e, with_label) == {}


def test_namespace_name_label_is_implicit() -> None:
    """P4: kubernetes.io/metadata.name is present even before the API server adds it."""
    idx = state(
        gateway(
            "egress-gateway",
            "common-infrastructure",
            routes={"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "consumer"}}},
        )
    )
    ns = ns_labels("consumer", {**AMBIENT, UW: "egress-gateway", UWN: "common-infrastructure"})
    assert judge(engine(idx), ns) == {}


# --- Workload pod templates (B0, R5) ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_pod_templates_are_judged_as_pods(kind: str) -> None:
    e = engine(STATE)
    assert judge(e, workload(kind, labels={UW: "None"})) == {"InvalidUseWaypoint": "deny"}
    assert judge(e, workload(kind, labels={UW: "waypoint"})) == {"UnsupportedTrafficType": "deny"}
    assert judge(e, workload(kind, labels={UW: "wl"})) == {}


def test_template_field_path_points_into_the_template() -> None:
    from testkit.builders import request

    v = engine(STATE).validate(request(workload("CronJob", labels={UW: "None"})))
    assert v.judged[0].finding.field == "spec.jobTemplate.spec.template.metadata.labels[istio.io/use-waypoint]"


def test_deployment_own_labels_are_never_read() -> None:
    """R5: only the template's labels matter."""
    d = workload("Deployment", labels={})
    d["metadata"]["labels"] = {UW: "None"}
    assert judge(engine(STATE), d) == {}


def test_state_unavailable_when_unsynced_but_syntax_still_checked() -> None:
    e = engine(STATE, synced=False)
    assert judge(e, svc({UW: "waypoint"})) == {"StateUnavailable": "warn"}
    assert judge(e, svc({UW: "None"})) == {"InvalidUseWaypoint": "deny"}
    assert judge(e, svc({})) == {}  # nothing chosen, nothing to report


def test_field_paths_follow_spec_c() -> None:
    from testkit.builders import request

    v = engine(STATE).validate(request(svc({UW: "same", UWN: "infra"})))
    assert [(j.code, j.finding.field) for j in v.judged] == [
        ("AttachmentDenied", "metadata.labels[istio.io/use-waypoint]")
    ]


@pytest.mark.parametrize(
    ("case", "template_labels", "ns_extra", "expected"),
    [
        ("L5 template asks for a sidecar", {"sidecar.istio.io/inject": "true"}, {}, {"NotCaptured": "warn"}),
        ("L5 namespace injects sidecars", {}, {"istio-injection": "enabled"}, {"NotCaptured": "warn"}),
        (
            "L5 the template opts out of injection",
            {"sidecar.istio.io/inject": "false"},
            {"istio-injection": "enabled"},
            {},
        ),
        ("L5 no sidecar predicted", {}, {}, {}),
    ],
)
def test_pod_templates_predicted_to_get_a_sidecar_are_not_captured(
    case: str, template_labels: dict[str, str], ns_extra: dict[str, str], expected: dict[str, str]
) -> None:
    idx = state(
        ns_labels("inj", {**AMBIENT, **ns_extra}), gateway("wl", "inj", labels={"istio.io/waypoint-for": "workload"})
    )
    assert judge(engine(idx), workload("Deployment", ns="inj", labels={UW: "wl", **template_labels})) == expected
