"""Waypoint-dependent objects (docs/rules.md A7): the policies that attach to a Service, a
ServiceEntry, a Gateway or a GatewayClass, and the GAMMA routes whose parent is a Service or a
ServiceEntry. Parsed once per request into small frozen dataclasses, like :mod:`webhook.core.model`:
only what the Z rules read, a field of the wrong shape raises :class:`Malformed`.

Policies are the kinds istiod's policy matcher attaches (AuthorizationPolicy, RequestAuthentication,
Telemetry, WasmPlugin, TrafficExtension, EnvoyFilter); an AuthorizationPolicy's rules are kept in
the shape of ztunnel's translation (Z5): each rule is a conjunction of clauses (its ``from``, its
``to``, each ``when`` condition), each clause a disjunction of entries, and each entry the
attributes it names, sorted by what ztunnel does with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from webhook.core.model import Json, Malformed, Meta, get_list, get_map, get_str, parse_meta, quoted

POLICY_KINDS = frozenset(
    {"AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin", "TrafficExtension", "EnvoyFilter"}
)
ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"})
DRY_RUN = "istio.io/dry-run"  # an annotation (Z4)
GATEWAY_API = "gateway.networking.k8s.io"
ISTIO_NETWORKING = "networking.istio.io"
# Z1: the four supported targets (group, kind); a Service's group is "" or "core".
SUPPORTED_TARGETS = frozenset(
    {(GATEWAY_API, "Gateway"), (GATEWAY_API, "GatewayClass"), ("", "Service"), ("core", "Service"),
     (ISTIO_NETWORKING, "ServiceEntry")}
)  # fmt: skip
SERVICE_KINDS = frozenset({"Service", "ServiceEntry"})

# Z5: what ztunnel can enforce (L4), what needs HTTP (L7), and what it neither translates nor reports.
L4_OPERATION = ("ports", "notPorts")
L7_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
L4_SOURCE = (
    "principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
    "serviceAccounts", "notServiceAccounts",
)  # fmt: skip
L7_SOURCE = ("requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks")
UNTRANSLATED_SOURCE = ("trustDomains", "notTrustDomains")
L4_WHEN = frozenset({"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"})


@dataclass(frozen=True)
class TargetRef:
    """One ``targetRefs`` entry (or the singular ``targetRef``), as written."""

    group: str
    kind: str
    name: str
    namespace: str
    field: str  # "spec.targetRefs[1]"

    def display(self) -> str:
        return f"{self.kind}.{self.group or 'core'}/{self.name}"


def target_problem(policy_kind: str, t: TargetRef) -> str | None:
    """Z1, Z7, Z12: why this target can never apply anywhere, read from the object alone (the
    webhook denies it; the reverse index leaves it out), or None."""
    if (t.group, t.kind) not in SUPPORTED_TARGETS:
        if t.kind == "Service":
            return f"has group {quoted(t.group)}: a Service's group is '' (core); no waypoint applies it"
        return "is not a Gateway, GatewayClass (gateway.networking.k8s.io), Service or ServiceEntry"
    if t.namespace:
        return "names a namespace: a policy targets only objects of its own namespace"
    if policy_kind == "EnvoyFilter" and t.kind in SERVICE_KINDS:
        return "of an EnvoyFilter never applies: waypoints match EnvoyFilters without Service information"
    return None


@dataclass(frozen=True)
class Entry:
    """One source, operation or condition, by what ztunnel makes of its attributes (Z5)."""

    field: str  # "spec.rules[0].from[1].source"
    l4: tuple[str, ...]
    l7: tuple[str, ...]
    untranslated: tuple[str, ...]

    @property
    def empty_at_ztunnel(self) -> bool:
        """ztunnel gets an empty match, which it skips as matching nothing (Z5)."""
        return not self.l4 and bool(self.l7 or self.untranslated)


@dataclass(frozen=True)
class AuthzRule:
    field: str  # "spec.rules[0]"
    clauses: tuple[tuple[Entry, ...], ...]  # ANDed; each clause's entries ORed

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(e for clause in self.clauses for e in clause)

    @property
    def has_l7(self) -> bool:
        return any(e.l7 for e in self.entries)

    @property
    def never_matches(self) -> bool:
        """A clause whose every entry is empty at ztunnel: the rule as a whole never matches."""
        return any(clause and all(e.empty_at_ztunnel for e in clause) for clause in self.clauses)


@dataclass(frozen=True)
class WaypointPolicy:
    """A policy kind of A7, with how it attaches: ``targets`` (targetRefs, else the singular
    targetRef) or a ``selector`` (workloadSelector for an EnvoyFilter), or neither (namespace-wide)."""

    kind: str
    meta: Meta
    targets: tuple[TargetRef, ...]
    has_selector: bool
    action: str = "ALLOW"  # AuthorizationPolicy only
    rules: tuple[AuthzRule, ...] = ()

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    def display(self) -> str:
        return self.meta.display(self.kind)

    @property
    def dry_run(self) -> bool:
        """Z4: istiod's strconv.ParseBool of the annotation."""
        return self.meta.annotations.get(DRY_RUN, "") in ("1", "t", "T", "TRUE", "true", "True")


@dataclass(frozen=True)
class ParentRef:
    group: str
    kind: str
    name: str
    namespace: str  # defaulted to the route's namespace
    field: str


@dataclass(frozen=True)
class MeshRoute:
    """A route with its Service and ServiceEntry parents (GAMMA); other parents are not A7's."""

    kind: str
    meta: Meta
    parents: tuple[ParentRef, ...]

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    def display(self) -> str:
        return self.meta.display(self.kind)


def _ref_fields(raw: Json, path: str) -> Mapping[str, Json]:
    if not isinstance(raw, dict):
        raise Malformed(path, "must be an object")
    for key in ("group", "kind", "name", "namespace"):
        get_str(raw, key, f"{path}.{key}")
    return raw


def _targets(spec: Mapping[str, Json]) -> tuple[TargetRef, ...]:
    raw = get_list(spec, "targetRefs", "spec.targetRefs")
    paths = [f"spec.targetRefs[{i}]" for i in range(len(raw))]
    if not raw and spec.get("targetRef") is not None:  # Z1: the singular one counts only then
        raw, paths = [spec["targetRef"]], ["spec.targetRef"]
    out = []
    for item, path in zip(raw, paths, strict=True):
        r = _ref_fields(item, path)
        out.append(
            TargetRef(r.get("group") or "", r.get("kind") or "", r.get("name") or "", r.get("namespace") or "", path)
        )
    return tuple(out)


def _entry(raw: Json, path: str, l4: tuple[str, ...], l7: tuple[str, ...], other: tuple[str, ...]) -> Entry:
    node = raw if isinstance(raw, dict) else {}
    if raw is not None and not isinstance(raw, dict):
        raise Malformed(path, "must be an object")

    def present(keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(k for k in keys if node.get(k))  # an empty list is no attribute (len > 0 in istiod)

    return Entry(path, present(l4), present(l7), present(other))


def _when(raw: Json, path: str) -> Entry:
    if not isinstance(raw, dict):
        raise Malformed(path, "must be an object")
    key = get_str(raw, "key", f"{path}.key") or ""
    return Entry(path, (key,), (), ()) if key in L4_WHEN else Entry(path, (), (key,), ())


def _rule(raw: Json, path: str) -> AuthzRule:
    if not isinstance(raw, dict):
        raise Malformed(path, "must be an object")
    clauses: list[tuple[Entry, ...]] = []
    sources = get_list(raw, "from", f"{path}.from")
    operations = get_list(raw, "to", f"{path}.to")
    if operations:
        clauses.append(tuple(_entry(_inner(o, "operation", f"{path}.to[{i}]"), f"{path}.to[{i}].operation",
                                    L4_OPERATION, L7_OPERATION, ()) for i, o in enumerate(operations)))  # fmt: skip
    if sources:
        clauses.append(tuple(_entry(_inner(s, "source", f"{path}.from[{i}]"), f"{path}.from[{i}].source",
                                    L4_SOURCE, L7_SOURCE, UNTRANSLATED_SOURCE) for i, s in enumerate(sources)))  # fmt: skip
    clauses += [(_when(w, f"{path}.when[{i}]"),) for i, w in enumerate(get_list(raw, "when", f"{path}.when"))]
    return AuthzRule(path, tuple(clauses))


def _inner(raw: Json, key: str, path: str) -> Json:
    if not isinstance(raw, dict):
        raise Malformed(path, "must be an object")
    return get_map(raw, key, f"{path}.{key}")


def parse_policy(kind: str, raw: Mapping[str, Json], namespace: str = "") -> WaypointPolicy:
    meta = parse_meta(raw, namespace=namespace)
    spec = get_map(raw, "spec", "spec")
    selector_key = "workloadSelector" if kind == "EnvoyFilter" else "selector"
    get_map(spec, selector_key, f"spec.{selector_key}")  # the shape only: which workloads is not A7's
    has_selector = spec.get(selector_key) is not None
    if kind != "AuthorizationPolicy":
        return WaypointPolicy(kind, meta, _targets(spec), has_selector)
    action = get_str(spec, "action", "spec.action") or "ALLOW"
    rules = tuple(_rule(r, f"spec.rules[{i}]") for i, r in enumerate(get_list(spec, "rules", "spec.rules")))
    return WaypointPolicy(kind, meta, _targets(spec), has_selector, action, rules)


SERVICE_PARENTS = frozenset({("", "Service"), ("core", "Service"), ("networking.istio.io", "ServiceEntry")})


def parse_route(kind: str, raw: Mapping[str, Json], namespace: str = "") -> MeshRoute:
    """Only the Service and ServiceEntry parents (Gateway API's default group for a parentRef is
    the Gateway API's own, so a Service parent names its group, ``""`` or ``core``)."""
    meta = parse_meta(raw, namespace=namespace)
    spec = get_map(raw, "spec", "spec")
    parents = []
    for i, item in enumerate(get_list(spec, "parentRefs", "spec.parentRefs")):
        r = _ref_fields(item, f"spec.parentRefs[{i}]")
        group = r.get("group")
        group = "gateway.networking.k8s.io" if group is None else group
        if (group, r.get("kind") or "Gateway") in SERVICE_PARENTS:
            ns = r.get("namespace") or meta.namespace
            parents.append(ParentRef(group, r["kind"], r.get("name") or "", ns, f"spec.parentRefs[{i}]"))
    return MeshRoute(kind, meta, tuple(parents))
