"""Domain model: label keys, name syntax, and typed views of the raw objects the rules read.

Raw admission objects are untrusted JSON. Everything the rules read is parsed here once into
small frozen dataclasses; a field of the wrong type raises :class:`Malformed` naming the field,
which the shell turns into a 400 deny (docs/rules.md C). Rules therefore never see a wrong type.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.kinds import CONSUMER_KINDS, TEMPLATE_PATHS

# docs/rules.md A1 label keys.
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
USE_WAYPOINT_CANARY = "istio.io/use-waypoint-canary"  # R6 (1.31)
USE_WAYPOINT_CANARY_NAMESPACE = "istio.io/use-waypoint-canary-namespace"
CANARY_WEIGHT = "istio.io/use-waypoint-canary-weight"  # an annotation
WAYPOINT_FOR = "istio.io/waypoint-for"
DATAPLANE_MODE = "istio.io/dataplane-mode"
INGRESS_USE_WAYPOINT = "istio.io/ingress-use-waypoint"
SIDECAR_INJECT = "sidecar.istio.io/inject"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
MANAGED_BY_GATEWAY = "gateway.istio.io/managed"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

WAYPOINT_FOR_VALUES = ("service", "workload", "all", "none")
ISTIO_WAYPOINT_CLASS = "istio-waypoint"
AGENTGATEWAY_WAYPOINT_CLASS = "istio-agentgateway-waypoint"  # 1.31
# W2: a GatewayClass with one of these controllers is an Istio-managed waypoint class.
WAYPOINT_CONTROLLERS = frozenset({"istio.io/mesh-controller", "istio.io/agentgateway-waypoint-controller"})
INBOUND_BINDING = "ambient.istio.io/waypoint-inbound-binding"
NAME_OVERRIDE = "gateway.istio.io/name-override"
SIDECAR_STATUS = "sidecar.istio.io/status"
INJECTION_LABEL = "istio-injection"
MESH_PORT = 15008
MESH_PROTOCOL = "HBONE"
WAYPOINT_SERVICE_MANAGERS = frozenset({"istio.io-mesh-controller", "istio.io-eastwest-controller"})

# The name syntaxes, also rendered into the ValidatingAdmissionPolicy's CEL (webhook.core.policies).
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1035 = re.compile(DNS1035_LABEL)
_DNS1123_LABEL = re.compile(DNS1123_LABEL)


def is_dns1035_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1035.fullmatch(value) is not None


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN)


def is_dns1123_subdomain(value: str) -> bool:
    """What Kubernetes accepts as an object name, so what a Gateway can be called."""
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def label_field(key: str, prefix: str = "metadata") -> str:
    """User-facing path of a label, as in ``metadata.labels[istio.io/use-waypoint]`` (docs/rules.md C)."""
    return f"{prefix}.labels[{key}]"


def quoted(value: object, limit: int = 64) -> str:
    """A value for a message: its repr, elided with its length when long, so that a 1 MiB label
    value cannot make a 1 MiB denial (messages aim at 120 characters)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[: limit - 1]}… ({size} characters)"


class Malformed(ValueError):
    """The object parses as JSON but a field the rules read has the wrong shape (docs/rules.md C: 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --- typed readers ---------------------------------------------------------------------------

Json = Any


def _get_map(obj: Mapping[str, Json], key: str, path: str) -> Mapping[str, Json]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(path, f"must be an object, not {type(value).__name__}")
    return value


def _get_list(obj: Mapping[str, Json], key: str, path: str) -> list[Json]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(path, f"must be a list, not {type(value).__name__}")
    return value


def _get_str(obj: Mapping[str, Json], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise Malformed(path, f"must be a string, not {type(value).__name__}")


def _str_map(obj: Mapping[str, Json], key: str, path: str) -> Mapping[str, str]:
    """The map itself, checked but not copied: rules never mutate objects."""
    raw = _get_map(obj, key, path)
    for k, v in raw.items():
        if type(k) is not str:  # only YAML can say it (a state file): JSON keys are strings
            raise Malformed(f"{path}[{k!r}]", f"keys must be strings, not {type(k).__name__}")
        if type(v) is not str:
            raise Malformed(f"{path}[{k}]", f"must be a string, not {type(v).__name__}")
    return raw


@dataclass(frozen=True)
class Meta:
    name: str
    namespace: str
    generate_name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    controlled: bool  # has an ownerReference with controller: true
    prefix: str = "metadata"  # where these labels live, for field paths

    def display(self, kind: str) -> str:
        name = self.name or (self.generate_name + "*" if self.generate_name else "<unnamed>")
        return f"{kind} {self.namespace}/{name}" if self.namespace else f"{kind} {name}"


def has_controller(owners: Json) -> bool:
    """An ownerReference with ``controller: true``: the object was made by a workload controller."""
    return isinstance(owners, list) and any(isinstance(o, dict) and o.get("controller") is True for o in owners)


def parse_meta(raw: Mapping[str, Json], prefix: str = "metadata", namespace: str = "") -> Meta:
    meta = _get_map(raw, "metadata", prefix)
    owners = _get_list(meta, "ownerReferences", f"{prefix}.ownerReferences")
    controlled = has_controller(owners)
    return Meta(
        name=_get_str(meta, "name", f"{prefix}.name") or "",
        namespace=_get_str(meta, "namespace", f"{prefix}.namespace") or namespace,
        generate_name=_get_str(meta, "generateName", f"{prefix}.generateName") or "",
        labels=_str_map(meta, "labels", f"{prefix}.labels"),
        annotations=_str_map(meta, "annotations", f"{prefix}.annotations"),
        controlled=controlled,
        prefix=prefix,
    )


# --- label selectors and allowedRoutes (docs/rules.md A4) ---------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] | None  # None: the field was absent

    @functools.cached_property
    def value_set(self) -> frozenset[str]:
        """The values as a set, built once: In/NotIn are then O(1) for every namespace checked."""
        return frozenset(self.values or ())


@dataclass(frozen=True)
class Selector:
    match_labels: Mapping[str, str]
    expressions: tuple[Requirement, ...]

    @functools.cached_property
    def problem(self) -> str | None:
        """P3: why Kubernetes' ``LabelSelectorAsSelector`` (and so istiod) rejects it, or None;
        worked out once per parsed selector, however many consumers are checked against it."""
        for key, value in self.match_labels.items():
            if not is_label_key(key):
                return f"matchLabels key {quoted(key)} is not a valid label key"
            if not is_label_value(value):
                return f"matchLabels value {quoted(value)} for {quoted(key)} is not a valid label value"
        return next((p for p in map(_requirement_problem, self.expressions) if p), None)


_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def is_label_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and _NAME.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _NAME.fullmatch(value) is not None)


def _requirement_problem(r: Requirement) -> str | None:
    if not is_label_key(r.key):
        return f"key {quoted(r.key)} is not a valid label key"
    if r.operator not in OPERATORS:
        return f"operator {quoted(r.operator)} is not one of {', '.join(OPERATORS)}"
    if r.operator in ("In", "NotIn") and not r.values:
        return f"operator {r.operator} on {quoted(r.key)} needs at least one value"
    if r.operator in ("Exists", "DoesNotExist") and r.values:
        return f"operator {r.operator} on {quoted(r.key)} must not have values"
    bad = next((v for v in r.values or () if not is_label_value(v)), None)
    if bad is not None:
        return f"value {quoted(bad)} for {quoted(r.key)} is not a valid label value"
    return None


@dataclass(frozen=True)
class AllowedRoutes:
    """The mesh listener's ``allowedRoutes.namespaces`` (P1, P2).

    ``selector`` is None when absent (matches nothing, P3); ``selector_error`` says why a
    present selector could not be parsed into the types above.
    """

    from_: str = "Same"
    selector: Selector | None = None
    selector_error: str | None = None


SAME_NAMESPACE = AllowedRoutes()


def parse_selector(raw: Json, path: str) -> tuple[Selector | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        return None, f"{path} must be an object"
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, dict) or not all(type(k) is str and type(v) is str for k, v in labels.items()):
        return None, f"{path}.matchLabels must map strings to strings"
    exprs_raw = raw.get("matchExpressions") or []
    if not isinstance(exprs_raw, list):
        return None, f"{path}.matchExpressions must be a list"
    exprs: list[Requirement] = []
    for i, e in enumerate(exprs_raw):
        where = f"{path}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            return None, f"{where} must be an object"
        key, op, values = e.get("key"), e.get("operator"), e.get("values")
        if not isinstance(key, str) or not isinstance(op, str):
            return None, f"{where} needs string key and operator"
        if values is not None and (not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
            return None, f"{where}.values must be a list of strings"
        exprs.append(Requirement(key, op, tuple(values) if values is not None else None))
    return Selector(dict(labels), tuple(exprs)), None


@dataclass(frozen=True)
class Listener:
    name: str
    port: int | None
    protocol: str | None
    routes: AllowedRoutes
    path: str

    @property
    def is_mesh(self) -> bool:
        """W3/P1: exactly port 15008 with protocol HBONE (uppercase)."""
        return self.port == MESH_PORT and self.protocol == MESH_PROTOCOL


def _parse_listener(raw: Json, path: str) -> Listener:
    if not isinstance(raw, dict):
        raise Malformed(path, "must be an object")
    port = raw.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        raise Malformed(f"{path}.port", "must be an integer")
    ar = _get_map(raw, "allowedRoutes", f"{path}.allowedRoutes")
    ns = _get_map(ar, "namespaces", f"{path}.allowedRoutes.namespaces")
    from_ = _get_str(ns, "from", f"{path}.allowedRoutes.namespaces.from") or "Same"
    selector, error = parse_selector(ns.get("selector"), f"{path}.allowedRoutes.namespaces.selector")
    return Listener(
        name=_get_str(raw, "name", f"{path}.name") or "",
        port=port,
        protocol=_get_str(raw, "protocol", f"{path}.protocol"),
        routes=AllowedRoutes(from_, selector, error),
        path=path,
    )


PROXY_PROTOCOL = "istio.io/PROXY"  # a sandwich's listener protocol (P1)


@dataclass(frozen=True)
class InboundBinding:
    """``ambient.istio.io/waypoint-inbound-binding`` as istiod reads it (P1)."""

    protocol: str  # PROXY or NONE
    port: int  # 0: no port


def parse_inbound_binding(value: str) -> tuple[InboundBinding | None, str | None]:
    """The binding istiod uses, and what is wrong with the value if anything (istiod only logs it).

    Exactly istiod's reading: ``<protocol>`` or ``<protocol>/<port>``; a protocol other than PROXY
    or NONE, or a second ``/``, leaves no binding at all; a port that is not a base-10 unsigned
    32-bit number (``abc``, ``-1``, ``+5``, empty) counts as no port, and so does 0."""
    parts = value.split("/")
    if len(parts) > 2:
        return None, f"{quoted(value)} has more than one '/'; the format is <protocol> or <protocol>/<port>"
    if parts[0] not in ("PROXY", "NONE"):
        return None, f"protocol {quoted(parts[0])} is not PROXY or NONE"
    port, problem = 0, None
    if len(parts) == 2:
        port, problem = _binding_port(parts[1])
    return InboundBinding(parts[0], port), problem


MAX_UINT32 = 0xFFFFFFFF


def _binding_port(text: str) -> tuple[int, str | None]:
    """P1, as Go's ``strconv.ParseUint(p, 10, 32)`` reads it: invalid syntax is no port; a value
    too large gives the maximum (with the error istiod only logs), which, like any port above
    65535, binds no listener, so the HBONE listener's allowedRoutes apply."""
    if not (text.isascii() and text.isdigit()):
        return 0, f"port {quoted(text)} is not a number, so it is ignored"
    port = min(int(text), MAX_UINT32)
    if port == 0:
        return 0, "port 0 is no port, so it is ignored"
    if port > 65535:
        return (
            port,
            f"port {quoted(text)} is above 65535: it binds no listener, so the HBONE listener's allowedRoutes apply",
        )
    return port, None


def consulted_listener(listeners: tuple[Listener, ...], binding: InboundBinding | None) -> tuple[Listener | None, bool]:
    """P1: the listener whose allowedRoutes count, and whether the binding selected it.

    With a binding: the first listener on its port, or without a port and PROXY, the first
    ``istio.io/PROXY`` listener. Otherwise the first 15008/HBONE listener; with none, ``Same``."""
    if binding is not None:
        if binding.port:
            bound = next((lis for lis in listeners if lis.port == binding.port), None)
        elif binding.protocol == "PROXY":
            bound = next((lis for lis in listeners if lis.protocol == PROXY_PROTOCOL), None)
        else:
            bound = None
        if bound is not None:
            return bound, True
    return next((lis for lis in listeners if lis.is_mesh), None), False


def binding_of(own: str | None, class_value: str | None) -> InboundBinding | None:
    """The Gateway's annotation when it has one (valid or not), else its GatewayClass's."""
    value = own if own is not None else class_value
    return parse_inbound_binding(value)[0] if value is not None else None


@dataclass(frozen=True)
class Gateway:
    meta: Meta
    class_name: str
    listeners: tuple[Listener, ...]
    listeners_present: bool  # key present and non-empty (M1)
    ready: bool  # W1: at least one status.addresses entry
    usable: bool = False  # W1: a Hostname, or an IPAddress that parses, reaches the data plane
    infrastructure_labels: Mapping[str, str] | None = None  # W5: spec.infrastructure.labels when set
    managed: bool = True  # W2: istiod deploys it (spec.addresses has at most one IPAddress entry)
    allowed_listeners: bool = False  # G1: spec.allowedListeners is set (ListenerSets may attach)

    @property
    def copied_labels(self) -> Mapping[str, str]:
        """W5: the labels Istio copies onto the waypoint's pods and Service."""
        return self.infrastructure_labels if self.infrastructure_labels is not None else self.meta.labels

    @property
    def deployed_name(self) -> str:
        """W2: the name of the Deployment and Service Istio creates for it."""
        return self.meta.annotations.get(NAME_OVERRIDE, self.meta.name)

    @property
    def inbound_binding(self) -> str | None:
        return self.meta.annotations.get(INBOUND_BINDING)

    @property
    def waypoint_for(self) -> str | None:
        return self.meta.labels.get(WAYPOINT_FOR)

    def mesh_listener(self) -> Listener | None:
        """W3: the first 15008/HBONE listener."""
        return next((lis for lis in self.listeners if lis.is_mesh), None)

    def consulted(self, class_binding: str | None = None) -> tuple[Listener | None, bool]:
        """P1: the listener whose allowedRoutes count, given the class's binding annotation."""
        return consulted_listener(self.listeners, binding_of(self.inbound_binding, class_binding))

    def routes(self, class_binding: str | None = None) -> AllowedRoutes:
        listener, _ = self.consulted(class_binding)
        return listener.routes if listener else SAME_NAMESPACE


def parse_gateway(raw: Mapping[str, Json], namespace: str = "") -> Gateway:
    meta = parse_meta(raw, namespace=namespace)
    spec = _get_map(raw, "spec", "spec")
    status = _get_map(raw, "status", "status")
    listeners_raw = _get_list(spec, "listeners", "spec.listeners")
    addresses = _get_list(status, "addresses", "status.addresses")
    infra = _get_map(spec, "infrastructure", "spec.infrastructure")
    requested = _get_list(spec, "addresses", "spec.addresses")
    return Gateway(
        meta=meta,
        class_name=_get_str(spec, "gatewayClassName", "spec.gatewayClassName") or "",
        listeners=tuple(_parse_listener(x, f"spec.listeners[{i}]") for i, x in enumerate(listeners_raw)),
        listeners_present=bool(listeners_raw),
        ready=bool(addresses),
        usable=any(_usable_address(a) for a in addresses),
        infrastructure_labels=(
            _str_map(infra, "labels", "spec.infrastructure.labels") if infra.get("labels") is not None else None
        ),
        managed=_managed(requested),
        allowed_listeners=spec.get("allowedListeners") is not None,
    )


def _managed(requested: list[Json]) -> bool:
    """W2: istiod deploys the waypoint unless ``spec.addresses`` has more than one entry, or one
    whose type is not IPAddress (the API's default type; G1: the value may be absent)."""
    if len(requested) > 1:
        return False
    return all(not isinstance(a, dict) or a.get("type", "IPAddress") == "IPAddress" for a in requested)


def _usable_address(raw: Json) -> bool:
    """W1: ztunnel gets a waypoint address only from a Hostname, or an IPAddress that parses."""
    if not isinstance(raw, dict) or not isinstance(raw.get("value"), str):
        return False
    kind = raw.get("type", "IPAddress")  # the API's default type
    if kind == "Hostname":
        return bool(raw["value"])
    if kind == "IPAddress":
        try:
            ipaddress.ip_address(raw["value"])
        except ValueError:
            return False
        return True
    return False


@dataclass(frozen=True)
class GatewayClass:
    meta: Meta
    controller: str = ""

    @property
    def waypoint_for(self) -> str | None:
        return self.meta.labels.get(WAYPOINT_FOR)

    @property
    def inbound_binding(self) -> str | None:
        return self.meta.annotations.get(INBOUND_BINDING)


def parse_gateway_class(raw: Mapping[str, Json]) -> GatewayClass:
    spec = _get_map(raw, "spec", "spec")
    return GatewayClass(parse_meta(raw), _get_str(spec, "controllerName", "spec.controllerName") or "")


# --- consumers (docs/rules.md A3) ---------------------------------------------------------------------

SERVICE = "service"
WORKLOAD = "workload"
# Shared, not built per object: the view holds tens of thousands of consumers.
SERVICE_TRAFFIC = frozenset({SERVICE})
WORKLOAD_TRAFFIC = frozenset({WORKLOAD})
ALL_TRAFFIC = frozenset({SERVICE, WORKLOAD})


@dataclass(frozen=True)
class Consumer:
    """An object that may bind to a waypoint: Namespace, Service, Pod (or pod template),
    ServiceEntry, WorkloadEntry, or one inline ServiceEntry endpoint (R4).

    ``namespace`` is the namespace whose permission counts (P4): for a Namespace, itself.
    ``traffic`` is what binding needs from ``waypoint-for`` (R3): service, workload, or both for
    a Namespace (its Services and, by inheritance, its workloads).
    """

    kind: str
    meta: Meta
    labels: Mapping[str, str]  # the labels Istio reads (R4 for WorkloadEntry)
    traffic: frozenset[str]
    excluded: bool = False  # R0 (gateway-name pods are resolved against the view later)
    host_network: bool = False
    template_of: str = ""  # "Deployment" etc. when judged as a pod template (B0, R5)
    endpoints: tuple[tuple[str, Mapping[str, str]], ...] = ()  # (field prefix, labels), R4
    # V2: why a ServiceEntry only works through a waypoint ("" when it does not need one).
    needs_waypoint: str = ""

    @property
    def namespace(self) -> str:
        return self.meta.name if self.kind == "Namespace" else self.meta.namespace

    def display(self) -> str:
        if self.template_of:
            return f"{self.template_of} {self.meta.namespace}/{self.meta.name or '*'} pod template"
        return self.meta.display(self.kind)


CANARY_KINDS = frozenset({"Namespace", "Service", "ServiceEntry"})  # R6: the kinds a canary label counts on


CONNECT_STRATEGY = "istio.io/connect-strategy"  # an annotation (V2)


def _endpoints(spec: Mapping[str, Json]) -> tuple[tuple[str, Mapping[str, str]], ...]:
    """R4: the inline endpoints that carry labels, by position."""
    parsed = []
    for i, ep in enumerate(_get_list(spec, "endpoints", "spec.endpoints")):
        if not isinstance(ep, dict):
            raise Malformed(f"spec.endpoints[{i}]", "must be an object")
        ep_labels = _str_map(ep, "labels", f"spec.endpoints[{i}].labels")
        if ep_labels:
            parsed.append((f"spec.endpoints[{i}]", ep_labels))
    return tuple(parsed)


def needs_waypoint(spec: Mapping[str, Json], annotations: Mapping[str, str]) -> str:
    """V2: why a ServiceEntry only works through a waypoint, or "": a wildcard host, DYNAMIC_DNS
    resolution, or the racing connect strategy."""
    hosts = spec.get("hosts")
    wildcard = (
        next((h for h in hosts if isinstance(h, str) and h.startswith("*")), None) if isinstance(hosts, list) else None
    )
    if wildcard is not None:
        return f"its host {quoted(wildcard)} is a wildcard"
    if spec.get("resolution") == "DYNAMIC_DNS":
        return "its resolution is DYNAMIC_DNS"
    if annotations.get(CONNECT_STRATEGY) == "RACE_FIRST_TCP_CONNECT":
        return f"its {CONNECT_STRATEGY} is RACE_FIRST_TCP_CONNECT"
    return ""


def parse_consumer(kind: str, raw: Mapping[str, Json], namespace: str = "") -> Consumer:
    """Parse a consumer or a workload's pod template into a :class:`Consumer`."""
    if kind in TEMPLATE_PATHS:
        return _parse_template(kind, raw, namespace)
    meta = parse_meta(raw, namespace=namespace)
    spec = _get_map(raw, "spec", "spec")
    labels: Mapping[str, str] = meta.labels
    traffic = SERVICE_TRAFFIC
    excluded = False
    host_network = False
    endpoints: tuple[tuple[str, Mapping[str, str]], ...] = ()
    needs = ""
    if kind == "Namespace":
        # P4: every namespace carries its immutable name label, even before the API server sets it.
        labels = {**meta.labels, NAMESPACE_NAME_LABEL: meta.name}
        traffic = ALL_TRAFFIC
    elif kind == "Service":
        excluded = (
            meta.labels.get(MANAGED_BY_GATEWAY) in WAYPOINT_SERVICE_MANAGERS
            or _get_str(spec, "type", "spec.type") == "ExternalName"
        )
    elif kind == "Pod":
        traffic = WORKLOAD_TRAFFIC
        host_network = spec.get("hostNetwork") is True
    elif kind == "WorkloadEntry":
        traffic = WORKLOAD_TRAFFIC
        labels = {**_str_map(spec, "labels", "spec.labels"), **meta.labels}  # R4: metadata wins
    elif kind == "ServiceEntry":
        endpoints = _endpoints(spec)
        needs = needs_waypoint(spec, meta.annotations)
    elif kind not in CONSUMER_KINDS:
        raise ValueError(f"not a consumer kind: {kind}")
    return Consumer(kind, meta, labels, traffic, excluded, host_network, "", endpoints, needs)


def _parse_template(kind: str, raw: Mapping[str, Json], namespace: str) -> Consumer:
    outer = parse_meta(raw, namespace=namespace)
    node: Mapping[str, Json] = raw
    path = ""
    for key in TEMPLATE_PATHS[kind]:
        path = f"{path}.{key}" if path else key
        node = _get_map(node, key, path)
    tmeta = parse_meta(node, prefix=f"{path}.metadata", namespace=outer.namespace)
    spec = _get_map(node, "spec", f"{path}.spec")
    # The template is judged under the workload's identity; ownership is the workload's (B1).
    meta = Meta(
        outer.name,
        outer.namespace,
        outer.generate_name,
        tmeta.labels,
        tmeta.annotations,
        outer.controlled,
        tmeta.prefix,
    )
    return Consumer(
        "Pod",
        meta,
        meta.labels,
        WORKLOAD_TRAFFIC,
        host_network=spec.get("hostNetwork") is True,
        template_of=kind,
    )


def parse_namespace_labels(raw: Mapping[str, Json]) -> tuple[str, dict[str, str]]:
    meta = parse_meta(raw)
    return meta.name, {**meta.labels, NAMESPACE_NAME_LABEL: meta.name}


# --- V1: ServiceEntry visibility from the MeshConfig (1.31) --------------------------------------

PUBLIC, NAMESPACE_ONLY, NOT_VISIBLE = "PUBLIC", "NAMESPACE", "NONE"
ROOT_NAMESPACE = "istio-system"  # MeshConfig rootNamespace's default
_VISIBILITIES = {"VISIBILITY_UNSPECIFIED": PUBLIC, "": PUBLIC, PUBLIC: PUBLIC, NAMESPACE_ONLY: NAMESPACE_ONLY}
_VISIBILITIES[NOT_VISIBLE] = NOT_VISIBLE


@dataclass(frozen=True)
class VisibilityPolicy:
    """One ``serviceEntryVisibility.policies[]`` entry: every rule must match (a rule whose selector
    is unset or cannot be parsed never does; an entry without rules matches everything)."""

    visibility: str
    rules: tuple[Selector | None, ...]


@dataclass(frozen=True)
class MeshConfig:
    """What the rules read of istiod's MeshConfig (the ``mesh`` key of ConfigMap ``istio``)."""

    default_visibility: str = PUBLIC
    policies: tuple[VisibilityPolicy, ...] = ()
    visibility_set: bool = False  # serviceEntryVisibility present: V1 is inert otherwise
    root_namespace: str = ROOT_NAMESPACE  # Z2, Z3: where mesh-wide policies and GatewayClass targets live


def _visibility(value: Json) -> str:
    return _VISIBILITIES.get(value, PUBLIC) if isinstance(value, str) else PUBLIC


def _policy(raw: Json) -> VisibilityPolicy | None:
    if not isinstance(raw, dict):
        return None
    rules_raw = raw.get("matchingRules") or []
    rules: list[Selector | None] = []
    for rule in rules_raw if isinstance(rules_raw, list) else [None]:
        selector = rule.get("namespaceSelector") if isinstance(rule, dict) else None
        parsed, problem = parse_selector(selector, "namespaceSelector") if selector is not None else (None, None)
        rules.append(None if problem else parsed)
    return VisibilityPolicy(_visibility(raw.get("visibility")), tuple(rules))


def parse_mesh_config(data: Json) -> MeshConfig:
    """The MeshConfig as istiod reads it; what does not parse counts as absent, never as an error
    of the object being judged."""
    if not isinstance(data, dict):
        return MeshConfig()
    root = data.get("rootNamespace")
    root = root if isinstance(root, str) and root else ROOT_NAMESPACE
    if not isinstance(data.get("serviceEntryVisibility"), dict):
        return MeshConfig(root_namespace=root)
    sev = data["serviceEntryVisibility"]
    raw = sev.get("policies") if isinstance(sev.get("policies"), list) else []
    policies = tuple(p for p in map(_policy, raw) if p is not None)
    return MeshConfig(_visibility(sev.get("defaultVisibility")), policies, True, root)


# The typed readers, for the model's sibling modules (webhook.core.dependents).
get_map, get_list, get_str, str_map = _get_map, _get_list, _get_str, _str_map
