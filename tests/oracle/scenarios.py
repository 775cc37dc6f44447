"""Scenarios for the differential tier, one per rule (docs/rules.md IDs). Each case lives in its own
namespaces (``<case>`` for the consumers, ``<case>-i`` for a waypoint elsewhere) and names its own
GatewayClasses, so that every case can be applied at once. There are no expected outcomes here:
istiod's is the expectation, and the webhook must agree with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
WF = "istio.io/waypoint-for"
C, CN, CW = (
    "istio.io/use-waypoint-canary",
    "istio.io/use-waypoint-canary-namespace",
    "istio.io/use-waypoint-canary-weight",
)
IB = "ambient.istio.io/waypoint-inbound-binding"
MESH = {"name": "mesh", "port": 15008, "protocol": "HBONE"}
PROXY = {"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"}
IP = [{"type": "IPAddress", "value": "10.0.0.50"}]


@dataclass
class Case:
    id: str
    objects: list[Obj]
    observe: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, namespace, name)


def ns(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {"istio.io/dataplane-mode": "ambient", **(labels or {})}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def gw(
    name: str,
    namespace: str,
    cls: str = "istio-waypoint",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    listeners: list[Obj] | None = None,
    addresses: list[Obj] | None = IP,
    routes: Obj | None = None,
) -> Obj:
    listener = {**MESH, **({"allowedRoutes": {"namespaces": routes}} if routes is not None else {})}
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    obj: Obj = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {"gatewayClassName": cls, "listeners": listeners if listeners is not None else [listener]},
    }
    if addresses is not None:
        obj["status"] = {"addresses": addresses}
    return obj


def gwc(
    name: str,
    controller: str = "istio.io/mesh-controller",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": meta,
        "spec": {"controllerName": controller},
    }


def svc(
    name: str,
    namespace: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    spec: Obj | None = None,
) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": spec or {"ports": [{"port": 80, "name": "http"}]},
    }


def se(name: str, namespace: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "hosts": [f"{name}.{namespace}.example.com"],
            "resolution": "DNS",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        },
    }


def we(
    name: str, namespace: str, labels: dict[str, str] | None = None, spec_labels: dict[str, str] | None = None
) -> Obj:
    spec: Obj = {"address": "10.1.0.7"}
    if spec_labels:
        spec["labels"] = spec_labels
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
    }


_pod_ips = iter(f"10.2.{i // 250}.{i % 250 + 1}" for i in range(10_000))


def pod(name: str, namespace: str, labels: dict[str, str] | None = None) -> Obj:
    """A Pod istiod lists in /debug/ambientz: it needs an IP, written through the status subresource."""
    ip = next(_pod_ips)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def _observed(objects: list[Obj]) -> list[tuple[str, str, str]]:
    return [
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in ("Service", "ServiceEntry", "WorkloadEntry", "Pod")
    ]


def case(id_: str, build: Callable[[str], list[Obj]]) -> Callable[[str], Case]:
    def make(prefix: str) -> Case:
        objects = build(prefix)
        return Case(id_, objects, _observed(objects))

    return make


def _sel(labels: dict[str, str]) -> Obj:
    return {"from": "Selector", "selector": {"matchLabels": labels}}


# Each builder gets the case's namespace name ``n`` (and uses ``n + "-i"`` for another one).
BUILDERS: list[Callable[[str], Case]] = [
    # R1: an object's own reference, no fallback
    case("R1 own reference to a ready waypoint", lambda n: [ns(n), gw("wp", n), svc("s", n, {UW: "wp"})]),
    case("R1 own reference to a missing waypoint", lambda n: [ns(n), svc("s", n, {UW: "ghost"})]),
    case(
        "R1 own reference to a waypoint without addresses",
        lambda n: [ns(n), gw("wp", n, addresses=None), svc("s", n, {UW: "wp"})],
    ),
    case(
        "R1 none opts out despite the namespace waypoint",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), svc("s", n, {UW: "none"})],
    ),
    case(
        "R1 own workload-only waypoint: no fallback to the namespace's",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), gw("wl", n, labels={WF: "workload"}), svc("s", n, {UW: "wl"})],
    ),
    case(
        "R1 own missing waypoint: no fallback to the namespace's",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), svc("s", n, {UW: "ghost"})],
    ),
    # R2: inherited from the namespace
    case("R2 inherits the namespace waypoint", lambda n: [ns(n, {UW: "wp"}), gw("wp", n), svc("s", n)]),
    case("R2 inherits a missing namespace waypoint", lambda n: [ns(n, {UW: "ghost"}), svc("s", n)]),
    case("R2 an invalid namespace value None is looked up", lambda n: [ns(n, {UW: "None"}), svc("s", n)]),
    case(
        "R2 an empty namespace use-waypoint-namespace", lambda n: [ns(n, {UW: "wp", UWN: ""}), gw("wp", n), svc("s", n)]
    ),
    case(
        "R2 namespace waypoint in another namespace",
        lambda n: [
            ns(n, {UW: "wp", UWN: n + "-i"}),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "All"}),
            svc("s", n),
        ],
    ),
    case(
        "R2/R3 inherited workload-only waypoint for a Service",
        lambda n: [ns(n, {UW: "wl"}), gw("wl", n, labels={WF: "workload"}), svc("s", n)],
    ),
    # L2: pairing of use-waypoint-namespace
    case(
        "L2 use-waypoint-namespace alone is ignored: the namespace waypoint applies",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), svc("s", n, {UWN: n + "-i"})],
    ),
    case(
        "L2 the namespace's use-waypoint-namespace does not combine with an own use-waypoint",
        lambda n: [
            ns(n, {UWN: n + "-i"}),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "All"}),
            svc("s", n, {UW: "wp"}),
        ],
    ),
    case(
        "L2 own cross-namespace reference",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "All"}),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    # L1: values that are names
    case("L1 None is a name, not the opt-out", lambda n: [ns(n), svc("s", n, {UW: "None"})]),
    case("L1 an empty value", lambda n: [ns(n), svc("s", n, {UW: ""})]),
    case("L1 a dotted Gateway name is looked up", lambda n: [ns(n), gw("wp.v2", n), svc("s", n, {UW: "wp.v2"})]),
    # L3: effective waypoint-for
    case("L3 no label, no class label: service", lambda n: [ns(n), gw("wp", n), svc("s", n, {UW: "wp"})]),
    case(
        "L3 the class's label decides",
        lambda n: [ns(n), gwc(n + "-c", labels={WF: "workload"}), gw("wp", n, cls=n + "-c"), svc("s", n, {UW: "wp"})],
    ),
    case(
        "L3 the Gateway's label beats the class's",
        lambda n: [
            ns(n),
            gwc(n + "-c", labels={WF: "workload"}),
            gw("wp", n, cls=n + "-c", labels={WF: "service"}),
            svc("s", n, {UW: "wp"}),
        ],
    ),
    case("L3 an empty label accepts nothing", lambda n: [ns(n), gw("wp", n, labels={WF: ""}), svc("s", n, {UW: "wp"})]),
    case(
        "L3 Service (capitalised) accepts nothing",
        lambda n: [ns(n), gw("wp", n, labels={WF: "Service"}), svc("s", n, {UW: "wp"})],
    ),
    case("L3 all", lambda n: [ns(n), gw("wp", n, labels={WF: "all"}), svc("s", n, {UW: "wp"})]),
    case("L3 none", lambda n: [ns(n), gw("wp", n, labels={WF: "none"}), svc("s", n, {UW: "wp"})]),
    # P2-P4: allowedRoutes of the mesh listener
    case(
        "P2 no allowedRoutes is Same: another namespace is refused",
        lambda n: [ns(n), ns(n + "-i"), gw("wp", n + "-i"), svc("s", n, {UW: "wp", UWN: n + "-i"})],
    ),
    case(
        "P3 Same refuses another namespace",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "Same"}),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3/P4 Selector on the consumer namespace's name",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes=_sel({"kubernetes.io/metadata.name": n})),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 Selector not matching",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes=_sel({"team": "blue"})),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 Selector {} matches all",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "Selector", "selector": {}}),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 Selector without a selector matches nothing",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", routes={"from": "Selector"}),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 matchExpressions In",
        lambda n: [
            ns(n, {"team": "red"}),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                routes={
                    "from": "Selector",
                    "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["red", "blue"]}]},
                },
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 matchExpressions NotIn",
        lambda n: [
            ns(n, {"team": "red"}),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                routes={
                    "from": "Selector",
                    "selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["red"]}]},
                },
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 matchExpressions DoesNotExist",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                routes={
                    "from": "Selector",
                    "selector": {"matchExpressions": [{"key": "frozen", "operator": "DoesNotExist"}]},
                },
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P3 the Gateway's own namespace is not implicitly selected",
        lambda n: [ns(n), gw("wp", n, routes=_sel({"team": "blue"})), svc("s", n, {UW: "wp"})],
    ),
    case(
        "P4 a Namespace's waypoint is checked against the namespace itself",
        lambda n: [
            ns(n, {UW: "wp", UWN: n + "-i", "team": "blue"}),
            ns(n + "-i"),
            gw("wp", n + "-i", routes=_sel({"team": "blue"})),
            svc("s", n),
        ],
    ),
    # P1: the inbound binding
    case(
        "P1 the bound listener admits all, the mesh listener only its namespace",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "PROXY/15088"},
                listeners=[MESH, {**PROXY, "allowedRoutes": {"namespaces": {"from": "All"}}}],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 the bound listener's Same wins over the mesh listener's All",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "PROXY/15088"},
                listeners=[{**MESH, "allowedRoutes": {"namespaces": {"from": "All"}}}, PROXY],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 PROXY/abc binds like PROXY",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "PROXY/abc"},
                listeners=[MESH, {**PROXY, "allowedRoutes": {"namespaces": {"from": "All"}}}],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 the class's binding",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gwc(n + "-c", "example.com/gw", annotations={IB: "PROXY"}),
            gw(
                "wp",
                n + "-i",
                cls=n + "-c",
                listeners=[MESH, {**PROXY, "allowedRoutes": {"namespaces": {"from": "All"}}}],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 an unmatched binding falls back to the mesh listener",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n + "-i", annotations={IB: "PROXY/15099"}),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 an unknown protocol leaves no binding",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "HTTP/15088"},
                listeners=[MESH, {**PROXY, "allowedRoutes": {"namespaces": {"from": "All"}}}],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 only the first HBONE listener counts",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                listeners=[
                    MESH,
                    {
                        **MESH,
                        "name": "mesh2",
                        "hostname": "mesh2.example.com",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    },
                ],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 without an HBONE listener the permission is Same",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                listeners=[
                    {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}
                ],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    # W1, W2, W6: which Gateways can be bound
    case(
        "W1 a Hostname address",
        lambda n: [
            ns(n),
            gw("wp", n, addresses=[{"type": "Hostname", "value": "wp.example.com"}]),
            svc("s", n, {UW: "wp"}),
        ],
    ),
    case(
        "W1 only a NamedAddress",
        lambda n: [ns(n), gw("wp", n, addresses=[{"type": "NamedAddress", "value": "wp"}]), svc("s", n, {UW: "wp"})],
    ),
    case(
        "W1/W2 an ingress Gateway of another class binds too",
        lambda n: [
            ns(n),
            gw("wp", n, cls="istio", listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
            svc("s", n, {UW: "wp"}),
        ],
    ),
    case(
        "W2 a class with Istio's mesh controller",
        lambda n: [ns(n), gwc(n + "-c"), gw("wp", n, cls=n + "-c"), svc("s", n, {UW: "wp"})],
    ),
    case(
        "W2 a dotted Gateway name with a name-override",
        lambda n: [
            ns(n),
            gw("wp.v2", n, annotations={"gateway.istio.io/name-override": "wp-v2"}),
            svc("s", n, {UW: "wp.v2"}),
        ],
    ),
    case(
        "W6 a sandwich ingress in ambient",
        lambda n: [
            ns(n),
            gw(
                "ingress",
                n,
                cls="istio",
                labels={"istio.io/dataplane-mode": "ambient", WF: "service"},
                listeners=[MESH],
            ),
            svc("s", n, {UW: "ingress"}),
        ],
    ),
    # R3, R4: ServiceEntries and WorkloadEntries
    case("R3 a ServiceEntry's own service waypoint", lambda n: [ns(n), gw("wp", n), se("e", n, {UW: "wp"})]),
    case(
        "R3 a ServiceEntry on a workload-only waypoint",
        lambda n: [ns(n), gw("wl", n, labels={WF: "workload"}), se("e", n, {UW: "wl"})],
    ),
    case("R2 a ServiceEntry inherits", lambda n: [ns(n, {UW: "wp"}), gw("wp", n), se("e", n)]),
    case(
        "R3/R4 a WorkloadEntry's own workload waypoint",
        lambda n: [ns(n), gw("wl", n, labels={WF: "workload"}), we("w", n, {UW: "wl"})],
    ),
    case(
        "R4 a WorkloadEntry's spec.labels",
        lambda n: [ns(n), gw("wl", n, labels={WF: "workload"}), we("w", n, spec_labels={UW: "wl"})],
    ),
    case(
        "R4 metadata.labels win over spec.labels",
        lambda n: [ns(n), gw("wl", n, labels={WF: "workload"}), we("w", n, {UW: "ghost"}, {UW: "wl"})],
    ),
    case("R3 a WorkloadEntry on a service-only waypoint", lambda n: [ns(n), gw("wp", n), we("w", n, {UW: "wp"})]),
    case(
        "R3 a WorkloadEntry inheriting a service waypoint is silent",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), we("w", n)],
    ),
    case(
        "R3 a WorkloadEntry on an all waypoint",
        lambda n: [ns(n), gw("all", n, labels={WF: "all"}), we("w", n, {UW: "all"})],
    ),
    # Pods: istiod writes no status; /debug/ambientz shows the waypoint a Pod resolved to
    case(
        "R1/R3 a Pod's own workload waypoint",
        lambda n: [ns(n), gw("wl", n, labels={WF: "workload"}), pod("p", n, {UW: "wl"})],
    ),
    case("R3 a Pod's own service-only waypoint", lambda n: [ns(n), gw("wp", n), pod("p", n, {UW: "wp"})]),
    case("R1 a Pod's missing waypoint", lambda n: [ns(n), pod("p", n, {UW: "ghost"})]),
    case(
        "R2/R3 a Pod inheriting a service-only waypoint gets none, silently",
        lambda n: [ns(n, {UW: "wp"}), gw("wp", n), pod("p", n)],
    ),
    case(
        "R2 a Pod inheriting an all waypoint",
        lambda n: [ns(n, {UW: "all"}), gw("all", n, labels={WF: "all"}), pod("p", n)],
    ),
    case(
        "R1 a Pod opting out of its namespace's waypoint",
        lambda n: [ns(n, {UW: "all"}), gw("all", n, labels={WF: "all"}), pod("p", n, {UW: "none"})],
    ),
    case(
        "P3 a Pod refused by another namespace's waypoint",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wl", n + "-i", labels={WF: "workload"}),
            pod("p", n, {UW: "wl", UWN: n + "-i"}),
        ],
    ),
    case(
        "R0 a Gateway's own Pod",
        lambda n: [
            ns(n, {UW: "all"}),
            gw("all", n, labels={WF: "all"}),
            pod("p", n, {"gateway.networking.k8s.io/gateway-name": "all"}),
        ],
    ),
    # R0: never consumers
    case(
        "R0 a waypoint's own Service",
        lambda n: [
            ns(n),
            gw("wp", n),
            svc("wp", n, {UW: "ghost", "gateway.istio.io/managed": "istio.io-mesh-controller"}),
        ],
    ),
    case(
        "R0 an ExternalName Service",
        lambda n: [ns(n), svc("s", n, {UW: "ghost"}, spec={"type": "ExternalName", "externalName": "example.com"})],
    ),
    case(
        "R0 a Gateway's WorkloadEntry",
        lambda n: [ns(n), gw("wp", n), we("w", n, {UW: "ghost", "gateway.networking.k8s.io/gateway-name": "wp"})],
    ),
    # R6: canary waypoints (1.31)
    case(
        "R6 a canary taking 20%",
        lambda n: [ns(n), gw("wp", n), gw("v2", n), svc("s", n, {UW: "wp", C: "v2"}, {CW: "20"})],
    ),
    case("R6 the canary is the primary", lambda n: [ns(n), gw("wp", n), svc("s", n, {UW: "wp", C: "wp"}, {CW: "20"})]),
    case(
        "R6 a weight over 100",
        lambda n: [ns(n), gw("wp", n), gw("v2", n), svc("s", n, {UW: "wp", C: "v2"}, {CW: "150"})],
    ),
    case("R6 a missing canary", lambda n: [ns(n), gw("wp", n), svc("s", n, {UW: "wp", C: "ghost"}, {CW: "20"})]),
    case(
        "R6 a workload-only canary",
        lambda n: [
            ns(n),
            gw("wp", n),
            gw("wl", n, labels={WF: "workload"}),
            svc("s", n, {UW: "wp", C: "wl"}, {CW: "20"}),
        ],
    ),
    case(
        "R6 a canary refusing the namespace",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw("wp", n),
            gw("v2", n + "-i"),
            svc("s", n, {UW: "wp", C: "v2", CN: n + "-i"}, {CW: "20"}),
        ],
    ),
    case(
        "R6 the namespace's canary label and weight",
        lambda n: [ns(n, {UW: "wp", C: "ghost"}, {CW: "30"}), gw("wp", n), svc("s", n)],
    ),
    case(
        "R6 a canary on a broken primary is ignored",
        lambda n: [ns(n), gw("v2", n), svc("s", n, {UW: "ghost", C: "v2"}, {CW: "20"})],
    ),
    # Revision 3
    case(
        "R6 own primary: the namespace's canary does not exist for it",
        lambda n: [ns(n, {UW: "wp", C: "ghost"}, {CW: "30"}), gw("wp", n), svc("s", n, {UW: "wp"})],
    ),
    case(
        "R6 own primary: the namespace's weight does not apply (own weight absent is 0)",
        lambda n: [ns(n, {C: "v2"}, {CW: "lots"}), gw("wp", n), gw("v2", n), svc("s", n, {UW: "wp", C: "v2"})],
    ),
    case(
        "R6 an own empty canary opts out of the namespace's",
        lambda n: [ns(n, {UW: "wp", C: "ghost"}, {CW: "30"}), gw("wp", n), svc("s", n, {C: ""})],
    ),
    case(
        "R6 an own none canary opts out of the namespace's",
        lambda n: [ns(n, {UW: "wp", C: "ghost"}, {CW: "30"}), gw("wp", n), svc("s", n, {C: "none"})],
    ),
    case(
        "R6 an inherited primary takes the object's own canary",
        lambda n: [ns(n, {UW: "wp", C: "v2"}, {CW: "30"}), gw("wp", n), gw("v2", n), svc("s", n, {C: "ghost"})],
    ),
    case(
        "P1 a port too large for 32 bits binds no listener: the mesh listener's All applies",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "PROXY/99999999999"},
                listeners=[{**MESH, "allowedRoutes": {"namespaces": {"from": "All"}}}, PROXY],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "P1 a port above 65535 binds no listener",
        lambda n: [
            ns(n),
            ns(n + "-i"),
            gw(
                "wp",
                n + "-i",
                cls="istio",
                annotations={IB: "PROXY/70000"},
                listeners=[{**MESH, "allowedRoutes": {"namespaces": {"from": "All"}}}, PROXY],
            ),
            svc("s", n, {UW: "wp", UWN: n + "-i"}),
        ],
    ),
    case(
        "W1 an unknown class with a lone NamedAddress",
        lambda n: [
            ns(n),
            gwc(n + "-c", "example.com/gw"),
            gw("wp", n, cls=n + "-c", addresses=[{"type": "NamedAddress", "value": "x"}]),
            svc("s", n, {UW: "wp"}),
        ],
    ),
    case(
        "W2 an unmanaged waypoint with a dotted name binds",
        lambda n: [ns(n), unmanaged(gw("reviews.v2", n)), svc("s", n, {UW: "reviews.v2"})],
    ),
    case(
        "G1 a waypoint allowing ListenerSets still binds through its own listeners",
        lambda n: [ns(n), allowing_listener_sets(gw("wp", n)), svc("s", n, {UW: "wp"})],
    ),
]


def unmanaged(gateway: Obj) -> Obj:
    """W2: two requested addresses make istiod deploy nothing and use them."""
    gateway["spec"]["addresses"] = [
        {"type": "IPAddress", "value": "10.0.0.61"},
        {"type": "IPAddress", "value": "10.0.0.62"},
    ]
    return gateway


def allowing_listener_sets(gateway: Obj) -> Obj:
    gateway["spec"]["allowedListeners"] = {"namespaces": {"from": "Same"}}
    return gateway


def cases() -> list[Case]:
    return [build(f"dt{i:02d}") for i, build in enumerate(BUILDERS)]
