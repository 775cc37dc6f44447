"""Consumer findings: label syntax and waypoint resolution (docs/rules.md L1, L2, L4, L5, R0-R5, P4).

A consumer's own ``use-waypoint`` is its reference (R1) with no fallback; without one it
inherits its namespace's (R2), and whatever fails there is at most a warning on it (B1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from webhook.core.findings import Code, Finding, Severity
from webhook.core.kinds import CONSUMER_KINDS
from webhook.core.model import (
    CANARY_KINDS,
    CANARY_WEIGHT,
    DATAPLANE_MODE,
    GATEWAY_NAME_LABEL,
    INJECTION_LABEL,
    NAMESPACE_ONLY,
    SERVICE,
    SERVICE_TRAFFIC,
    SIDECAR_INJECT,
    SIDECAR_STATUS,
    USE_WAYPOINT,
    USE_WAYPOINT_CANARY,
    USE_WAYPOINT_CANARY_NAMESPACE,
    USE_WAYPOINT_NAMESPACE,
    WORKLOAD_TRAFFIC,
    Consumer,
    MeshConfig,
    Meta,
    Selector,
    is_dns1123_label,
    is_dns1123_subdomain,
    quoted,
)
from webhook.core.rules.context import Context, path_of
from webhook.core.rules.permissions import Attachment, attachment
from webhook.core.rules.rule import Rule, rule
from webhook.core.rules.selectors import matches, selector_problem
from webhook.core.rules.traffic import effective_waypoint_for
from webhook.core.view import WaypointInfo


@dataclass(frozen=True)
class Site:
    """Where a pair of reference labels lives: the object itself, or one ServiceEntry endpoint."""

    labels: Mapping[str, str]
    field: Callable[[str], str]  # label key -> user-facing path
    triggers: Callable[[str], tuple[tuple[str, ...], ...]]
    traffic: frozenset[str]
    what: str  # for messages


def _object_site(c: Consumer) -> Site:
    prefix = c.meta.prefix

    def field(key: str) -> str:
        if c.kind == "WorkloadEntry" and key not in c.meta.labels:
            return f"spec.labels[{key}]"  # R4: metadata.labels win, spec.labels otherwise
        return f"{prefix}.labels[{key}]"

    def triggers(key: str) -> tuple[tuple[str, ...], ...]:
        own = path_of(prefix, "labels", key)
        return (own, ("spec", "labels", key)) if c.kind == "WorkloadEntry" else (own,)

    return Site(c.labels, field, triggers, c.traffic, c.display())


def _endpoint_site(c: Consumer, path: str, labels: Mapping[str, str]) -> Site:
    idx = path[path.index("[") + 1 : -1]
    return Site(
        labels,
        lambda key: f"{path}.labels[{key}]",
        lambda key: (("spec", "endpoints", idx, "labels", key),),
        WORKLOAD_TRAFFIC,
        f"{c.display()} endpoint {idx}",
    )


def _pair_triggers(site: Site) -> tuple[tuple[str, ...], ...]:
    return site.triggers(USE_WAYPOINT) + site.triggers(USE_WAYPOINT_NAMESPACE)


DENY_EVEN_INHERITED = frozenset({Code.UnevaluableAllowedRoutes})


def is_waypoint_instance(c: Consumer, ctx: Context) -> bool:
    """R0: a Pod (or template) or WorkloadEntry labelled with the name of a Gateway of any class in
    its own namespace is that Gateway's instance (a sandwich ingress's pods included), never a
    consumer. istiod waits for the Gateway to be ready; the webhook does not, so that a gateway's
    own pods are never judged as consumers."""
    gateway_name = c.labels.get(GATEWAY_NAME_LABEL)
    if c.kind not in ("Pod", "WorkloadEntry") or gateway_name is None:
        return False
    if not ctx.view.synced():
        return True  # never block a gateway's own rollout on an unsynced cache
    return ctx.view.gateway(c.namespace, gateway_name) is not None


# --- R6: canary waypoints (1.31; Services and ServiceEntries, and Namespaces as their Services see them)

_WEIGHT = re.compile(r"[+-]?[0-9]+")


def _weight_ok(text: str | None) -> bool:
    """An integer in 0-100; absent means 0."""
    return text is None or (_WEIGHT.fullmatch(text) is not None and 0 <= int(text) <= 100)


def _primary(c: Consumer, ctx: Context) -> tuple[tuple[str, str], bool] | None:
    """The primary reference the canary rides on, and whether it is the object's own (R1/R2)."""
    own = c.kind == "Namespace" or USE_WAYPOINT in c.labels
    labels = c.labels if own else ctx.view.namespace_labels(c.namespace)
    name = labels.get(USE_WAYPOINT)
    if name is None or name == "none" or not is_dns1123_subdomain(name):
        return None
    ns = labels.get(USE_WAYPOINT_NAMESPACE, c.namespace)
    return ((ns, name), own) if is_dns1123_label(ns) else None


CANARY_OPT_OUT = frozenset({"", "none"})  # R6: no canary; on an object, an explicit opt-out


@dataclass(frozen=True)
class _Canary:
    """Where a consumer's canary reference comes from (its own labels or its Namespace's, R6)."""

    own: bool
    name: str
    ns_label: str | None
    what: str
    field: str
    triggers: tuple[tuple[str, ...], ...]


def _canary_of(c: Consumer, ctx: Context) -> _Canary | None:
    """R6: the Namespace's canary exists only for objects that inherit their primary from it; the
    object's own canary label, when present (even ``""`` or ``none``, the opt-out), wins."""
    own = c.kind == "Namespace" or USE_WAYPOINT in c.labels or USE_WAYPOINT_CANARY in c.labels
    labels = c.labels if own else ctx.view.namespace_labels(c.namespace)
    name = labels.get(USE_WAYPOINT_CANARY)
    if name is None or name in CANARY_OPT_OUT:
        return None
    prefix = c.meta.prefix
    return _Canary(
        own,
        name,
        labels.get(USE_WAYPOINT_CANARY_NAMESPACE),
        c.display() if own else f"{c.display()} (canary via namespace {c.namespace})",
        f"{prefix}.labels[{USE_WAYPOINT_CANARY}]" if own else f"namespace {c.namespace} labels[{USE_WAYPOINT_CANARY}]",
        (
            path_of(prefix, "labels", USE_WAYPOINT_CANARY),
            path_of(prefix, "labels", USE_WAYPOINT_CANARY_NAMESPACE),
            path_of(prefix, "annotations", CANARY_WEIGHT),
        ),
    )


def _canary_syntax(c: Consumer, k: _Canary) -> list[Finding] | None:
    """The canary's own names, when they are invalid (None when they are valid)."""
    bad_ns = k.ns_label is not None and not is_dns1123_label(k.ns_label)
    if k.name.lower() != "none" and is_dns1123_subdomain(k.name) and not bad_ns:
        return None
    if not k.own:
        return []  # the Namespace was denied for it when it was labelled
    code, key, value = (
        (Code.InvalidUseWaypointNamespace, USE_WAYPOINT_CANARY_NAMESPACE, k.ns_label)
        if bad_ns
        else (Code.InvalidUseWaypoint, USE_WAYPOINT_CANARY, k.name)
    )
    shown = '""' if value == "" else quoted(value)
    prefix = c.meta.prefix
    return [Finding(code, f"{k.what}: {key} {shown} is not a valid name", f"{prefix}.labels[{key}]", k.triggers)]


def canary(c: Consumer, ctx: Context) -> list[Finding]:
    """The canary label and the weight annotation fall back to the Namespace's (unlike the
    primary reference). The canary applies only when the primary resolved cleanly; then it is
    judged like a primary reference, and problems that come from the Namespace's labels are
    warnings on the object. Istio drops a failing canary silently (it only appends to the
    WaypointBound condition's message), which is why the webhook says it here."""
    k = _canary_of(c, ctx) if c.kind in CANARY_KINDS else None
    if k is None:
        return []
    bad = _canary_syntax(c, k)
    if bad is not None:
        return bad
    primary = _primary(c, ctx)
    if primary is None or not ctx.view.synced():
        return []
    ref, primary_own = primary
    ns_labels = c.labels if c.kind == "Namespace" else None
    if not resolved(_cached_outcomes(c, SERVICE_TRAFFIC, ref, ctx, ns_labels, not primary_own)):
        return []  # the primary did not resolve cleanly: Istio ignores the canary
    return _canary_findings(c, ctx, k, ref, ns_labels)


def _canary_findings(
    c: Consumer, ctx: Context, k: _Canary, ref: tuple[str, str], ns_labels: Mapping[str, str] | None
) -> list[Finding]:
    """Beside a cleanly resolved primary: the canary is the primary, its weight is unusable, or
    what its own resolution meets."""
    target = (k.ns_label if k.ns_label is not None else c.namespace, k.name)
    # R6: an object with its own primary uses only its own weight (absent is 0); one that inherits
    # it uses its own weight, else the Namespace's.
    own_weight = c.kind == "Namespace" or USE_WAYPOINT in c.labels or CANARY_WEIGHT in c.meta.annotations
    weight = (c.meta.annotations if own_weight else ctx.view.namespace_annotations(c.namespace)).get(CANARY_WEIGHT)
    if target == ref:
        text = f"{k.what}: the canary waypoint {target[0]}/{target[1]} is the primary one"
        return [Finding(Code.CanarySameAsPrimary, text, k.field, k.triggers)]
    if not _weight_ok(weight):
        f = Finding(
            Code.CanaryInvalidWeight,
            f"{k.what}: {CANARY_WEIGHT} {quoted(weight)} is not an integer from 0 to 100; Istio drops the canary",
            f"{c.meta.prefix}.annotations[{CANARY_WEIGHT}]"
            if own_weight
            else f"namespace {c.namespace} annotations[{CANARY_WEIGHT}]",
            k.triggers,
        )
        return [f if own_weight else f.capped(Severity.WARN)]
    out: list[Finding] = []
    for o in _cached_outcomes(c, SERVICE_TRAFFIC, target, ctx, ns_labels, not k.own):
        f = Finding(o.code, f"{k.what}: canary {o.text}", k.field, k.triggers)
        out.append(f if k.own or o.code in DENY_EVEN_INHERITED else f.capped(Severity.WARN))
    return out


def _sites(c: Consumer, ctx: Context) -> list[Site]:
    """Where the object names waypoints with its own labels: itself, and each ServiceEntry endpoint
    (R4). Built once per judgement: several rules walk them."""
    sites: list[Site] | None = ctx.memo.get("sites")
    if sites is None:
        sites = ctx.memo["sites"] = [
            _object_site(c),
            *(_endpoint_site(c, path, labels) for path, labels in c.endpoints),
        ]
    return sites


def _reference_syntax(site: Site) -> list[Finding]:
    """L1, L2: the syntax of one use-waypoint pair."""
    out: list[Finding] = []
    name = site.labels.get(USE_WAYPOINT)
    ns_label = site.labels.get(USE_WAYPOINT_NAMESPACE)
    if name is None and ns_label is None:
        return out  # the common case for inherited objects: nothing of its own to check
    triggers = _pair_triggers(site)
    if ns_label is not None and not is_dns1123_label(ns_label):
        out.append(
            Finding(
                Code.InvalidUseWaypointNamespace,
                f"{site.what}: use-waypoint-namespace {quoted(ns_label)} is not a namespace name",
                site.field(USE_WAYPOINT_NAMESPACE),
                triggers,
            )
        )
    if ns_label is not None and (name is None or name == "none"):
        why = "without use-waypoint" if name is None else "with use-waypoint=none"
        out.append(
            Finding(
                Code.OrphanUseWaypointNamespace,
                f"{site.what}: use-waypoint-namespace is ignored {why}; add use-waypoint or remove it",
                site.field(USE_WAYPOINT_NAMESPACE),
                triggers,
            )
        )
    # L1: exactly "none" opts out and stops inheritance. A Gateway can have any valid object name
    # (a DNS-1123 subdomain): one named `reviews.v2` with a name-override annotation deploys fine,
    # so only names no Gateway can have are denied here.
    if name is not None and name != "none" and (name.lower() == "none" or not is_dns1123_subdomain(name)):
        fix = (
            "write 'none' (lowercase) to opt out"
            if name.lower() == "none"
            else ("name a Gateway (lowercase letters, digits, '-' and '.')")
        )
        shown = '""' if name == "" else quoted(name)
        out.append(
            Finding(
                Code.InvalidUseWaypoint,
                f"{site.what}: use-waypoint {shown} is not a waypoint name; {fix}",
                site.field(USE_WAYPOINT),
                triggers,
            )
        )
    return out


def _refs(c: Consumer, ctx: Context) -> list[tuple[str, str] | None]:
    """:func:`_well_formed` for each of :func:`_sites`, once per judgement."""
    refs: list[tuple[str, str] | None] | None = ctx.memo.get("refs")
    if refs is None:
        refs = ctx.memo["refs"] = [_well_formed(c, site) for site in _sites(c, ctx)]
    return refs


def _well_formed(c: Consumer, site: Site) -> tuple[str, str] | None:
    """The (namespace, name) a site's own pair names, when it is well formed and not "none"."""
    name = site.labels.get(USE_WAYPOINT)
    ns_label = site.labels.get(USE_WAYPOINT_NAMESPACE)
    if name is None or name.lower() == "none" or not is_dns1123_subdomain(name):
        return None
    if ns_label is not None and not is_dns1123_label(ns_label):
        return None
    return (ns_label if ns_label is not None else c.namespace, name)


def reference_syntax(c: Consumer, ctx: Context) -> list[Finding]:
    """L1, L2: the syntax of each use-waypoint pair the object carries (its own, its endpoints')."""
    out: list[Finding] = []
    for site in _sites(c, ctx):
        out += _reference_syntax(site)
    return out


def reference_binding(c: Consumer, ctx: Context) -> list[Finding]:
    """R1, R3, R4, P1-P4, W1, W2, W6: what binding a well-formed own reference meets."""
    out: list[Finding] = []
    ns_labels = c.labels if c.kind == "Namespace" else None
    for site, ref in zip(_sites(c, ctx), _refs(c, ctx), strict=True):
        if ref is not None:
            out += _resolve(c, site, ref, ctx, ns_labels, inherited=False)
    return out


def capture(c: Consumer, ctx: Context) -> list[Finding]:
    """L5: a binding only matters for traffic ambient captures (known once the view is synced)."""
    if _refs(c, ctx)[0] is None or not ctx.view.synced():
        return []
    return _capture(c, _sites(c, ctx)[0], ctx)


def inherited_reference(c: Consumer, ctx: Context) -> list[Finding]:
    """R2: an object without its own label is judged through its namespace, as warnings only."""
    if USE_WAYPOINT in c.labels:
        return []
    if not ctx.view.synced():
        return []  # nothing of its own to check; StateUnavailable is for objects that chose a waypoint
    ns_labels = ctx.view.namespace_labels(c.namespace)
    name = ns_labels.get(USE_WAYPOINT)
    ns_label = ns_labels.get(USE_WAYPOINT_NAMESPACE)
    # R2: a namespace value that is not a valid name (None, an empty use-waypoint-namespace) is
    # still looked up as one by istiod, finds nothing, and leaves every Service "not ready": the
    # objects inheriting it are warned like for any missing waypoint (the Namespace itself was
    # denied when it was labelled).
    if name is None or name == "none":
        return []
    site = Site(
        ns_labels,
        lambda key: f"namespace {c.namespace} labels[{key}]",
        lambda key: (),
        c.traffic,
        f"{c.display()} (via namespace {c.namespace})",
    )
    target = (ns_label if ns_label is not None else c.namespace, name)
    # Inherited problems are warnings (the Namespace was judged when labelled), but for one that
    # crashes istiod (A5), which must never be admitted.
    return [
        f if f.code in DENY_EVEN_INHERITED else f.capped(Severity.WARN)
        for f in _resolve(c, site, target, ctx, ns_labels, inherited=True)
    ]


@dataclass(frozen=True)
class Outcome:
    """What resolving one reference found, before it is attributed to a site (object or endpoint)."""

    code: Code
    text: str
    warn_only: bool = False
    # istiod binds all the same (a policy warning, or W1's unusable address): the reference did
    # resolve, as far as the canary (R6) and a ServiceEntry that needs a waypoint (V2) go.
    istiod_binds: bool = False


def resolved(outcomes: list[Outcome]) -> bool:
    """Whether istiod binds the reference despite these outcomes."""
    return all(o.istiod_binds for o in outcomes)


def _resolve(
    c: Consumer,
    site: Site,
    ref: tuple[str, str],
    ctx: Context,
    ns_labels: Mapping[str, str] | None,
    inherited: bool,
) -> list[Finding]:
    """R1/R2/R3 and P1-P4 for one well-formed reference.

    The outcome depends only on the reference, the traffic type and inheritance, so it is
    computed once per request (a ServiceEntry's endpoints usually share one waypoint).
    """
    outcomes = _cached_outcomes(c, site.traffic, ref, ctx, ns_labels, inherited)
    if resolved(outcomes) and c.kind == "ServiceEntry" and site.traffic == SERVICE_TRAFFIC:
        outcomes = [*outcomes, *_visibility(c, ref, ctx, ns_labels)]  # V1: after the traffic type, the primary only
    if not outcomes:
        return []
    field, triggers = site.field(USE_WAYPOINT), _pair_triggers(site)
    out = []
    for o in outcomes:
        f = Finding(o.code, f"{site.what}: {o.text}", field, triggers)
        out.append(f.capped(Severity.WARN) if o.warn_only else f)
    return out


def _cached_outcomes(
    c: Consumer,
    traffic: frozenset[str],
    ref: tuple[str, str],
    ctx: Context,
    ns_labels: Mapping[str, str] | None,
    inherited: bool,
) -> list[Outcome]:
    """:func:`_outcomes`, once per judgement for each (reference, traffic, inheritance)."""
    key = ("outcomes", ref, traffic, inherited)
    outcomes: list[Outcome] | None = ctx.memo.get(key)
    if outcomes is None:
        outcomes = ctx.memo[key] = _outcomes(c, traffic, ref, ctx, ns_labels, inherited)
    return outcomes


def _outcomes(
    c: Consumer,
    traffic: frozenset[str],
    ref: tuple[str, str],
    ctx: Context,
    ns_labels: Mapping[str, str] | None,
    inherited: bool,
) -> list[Outcome]:
    view = ctx.view
    where = f"{ref[0]}/{ref[1]}"
    if not view.synced():
        return [Outcome(Code.StateUnavailable, f"cluster state not synced yet; waypoint {where} was not checked")]
    gw = view.gateway(*ref)
    if gw is None:
        return [Outcome(Code.WaypointNotFound, f"waypoint Gateway {where} not found; create it or fix the label")]
    out: list[Outcome] = []
    if not ctx.is_waypoint_class(gw.class_name) and not ctx.is_sandwich(gw):  # W2, W6
        out.append(
            Outcome(
                Code.NotAWaypoint,
                f"Gateway {where} has class {quoted(gw.class_name)}, not a waypoint class",
                istiod_binds=True,
            )
        )
    if not gw.ready:
        out.append(
            Outcome(Code.WaypointNotReady, f"waypoint {where} has no address yet; traffic bypasses it until ready")
        )
    labels = ns_labels if ns_labels is not None else view.namespace_labels(c.namespace)
    out += _attachment(c, gw, where, labels, ctx)
    out += _traffic_type(c, gw, where, traffic, inherited, ctx)
    if gw.ready and not gw.usable and all(o.code is Code.NotAWaypoint for o in out):
        # W1: bound as far as istiod is concerned, but ztunnel gets no address (a lone NamedAddress).
        # A policy warning (NotAWaypoint) never hides what the data plane will do.
        out.append(
            Outcome(
                Code.WaypointNotReady,
                f"waypoint {where} has no Hostname or IP address; traffic bypasses it",
                istiod_binds=True,
            )
        )
    return out


def _attachment(c: Consumer, gw: WaypointInfo, where: str, labels: Mapping[str, str], ctx: Context) -> list[Outcome]:
    """P1-P4: the consulted listener's allowedRoutes against the consumer's namespace."""
    class_info = ctx.view.gateway_class(gw.class_name)
    routes = gw.routes(class_info.inbound_binding if class_info else None)  # P1
    decision = attachment(routes, gw.namespace, c.namespace, labels)
    if decision is Attachment.UNKNOWN:
        # A5: istiod dereferences the unparsable selector as soon as something references the
        # Gateway, and crashes, again on every restart: deny even an inherited reference.
        text = (
            f"waypoint {where} has an allowedRoutes selector istiod cannot evaluate (it crashes on it); fix the Gateway"
        )
        return [Outcome(Code.UnevaluableAllowedRoutes, text)]
    if decision is not Attachment.ALLOWED:
        text = (
            f"waypoint {where} refuses binding: its allowedRoutes ({routes.from_}) do not admit namespace {c.namespace}"
        )
        return [Outcome(Code.AttachmentDenied, text)]
    return []


def _traffic_type(
    c: Consumer, gw: WaypointInfo, where: str, traffic: frozenset[str], inherited: bool, ctx: Context
) -> list[Outcome]:
    """R3: whether the waypoint's effective waypoint-for serves this kind of object."""
    eff = effective_waypoint_for(gw.waypoint_for, ctx.view.class_waypoint_for(gw.class_name))
    if c.kind == "Namespace":
        if SERVICE in eff.serves:
            return []
        text = f"waypoint {where} is for {quoted(eff.raw)}, so it will not serve the Services here"
        return [Outcome(Code.NamespaceWaypointTrafficType, text)]
    if (traffic & eff.serves) or not (SERVICE in traffic or not inherited):
        return []  # served, or an inherited workload mismatch: silently "no waypoint" (R3)
    need = "service or all" if SERVICE in traffic else "workload or all"
    text = f"waypoint {where} is for {quoted(eff.raw)}, needs {need}; no fallback applies"
    return [Outcome(Code.UnsupportedTrafficType, text)]


def needs_a_waypoint(c: Consumer, ctx: Context) -> list[Finding]:
    """V2: a ServiceEntry with a wildcard host, DYNAMIC_DNS resolution or the racing connect
    strategy does nothing in ambient unless a waypoint serves it: istiod only writes
    ``WaypointMissing`` (or just logs) once it is too late."""
    if not c.needs_waypoint or not ctx.view.synced():
        return []
    own = USE_WAYPOINT in c.labels
    labels = c.labels if own else ctx.view.namespace_labels(c.namespace)
    name = labels.get(USE_WAYPOINT)
    field = f"{c.meta.prefix}.labels[{USE_WAYPOINT}]"
    triggers = (path_of(c.meta.prefix, "labels", USE_WAYPOINT), ("spec", "hosts"), ("spec", "resolution"))
    if name is None or name == "none":
        why = "it opts out with use-waypoint=none" if name == "none" else "nothing names a waypoint for it"
        return [
            Finding(
                Code.ServiceEntryNeedsWaypoint,
                f"{c.display()}: {c.needs_waypoint}, so it only works through a waypoint, and {why}",
                field,
                triggers,
            )
        ]
    primary = _primary(c, ctx)
    if primary is not None and resolved(_cached_outcomes(c, SERVICE_TRAFFIC, primary[0], ctx, None, not primary[1])):
        return []
    text = f"{c.display()}: {c.needs_waypoint}, so it only works through a waypoint, and its waypoint reference does not resolve"
    return [Finding(Code.ServiceEntryNeedsWaypoint, text, field, triggers)]


def _visibility(c: Consumer, ref: tuple[str, str], ctx: Context, ns_labels: Mapping[str, str] | None) -> list[Outcome]:
    """V1: a ServiceEntry of visibility NAMESPACE (MeshConfig serviceEntryVisibility) cannot bind a
    waypoint in another namespace. Without the MeshConfig the rule cannot run, and stays silent."""
    mesh = ctx.view.mesh_config()
    if mesh is None or not mesh.visibility_set or ref[0] == c.namespace:
        return []
    labels = ns_labels if ns_labels is not None else ctx.view.namespace_labels(c.namespace)
    if visibility_of(mesh, labels) != NAMESPACE_ONLY:
        return []
    text = (
        f"its visibility is NAMESPACE (MeshConfig serviceEntryVisibility), so waypoint {ref[0]}/{ref[1]} "
        "in another namespace is forbidden; use a waypoint in its own namespace"
    )
    return [Outcome(Code.CrossNamespaceWaypointForbidden, text)]


def visibility_of(mesh: MeshConfig, namespace_labels: Mapping[str, str]) -> str:
    """V1: the first policy whose rules all match the ServiceEntry's namespace, else the default."""
    for policy in mesh.policies:
        if all(_rule_matches(rule, namespace_labels) for rule in policy.rules):
            return policy.visibility
    return mesh.default_visibility


def _rule_matches(rule: Selector | None, labels: Mapping[str, str]) -> bool:
    """A matching rule whose selector is unset or does not parse never matches (V1)."""
    return rule is not None and selector_problem(rule) is None and matches(rule, labels)


def _has_sidecar(c: Consumer, ns_labels: Mapping[str, str]) -> str:
    """L5: Istio's CNI never captures a pod with a sidecar. A Pod shows it by the annotation the
    injector sets; a pod template is predicted to get one by its inject label, or by its
    namespace's injection label unless the template opts out. Returns why, or ""."""
    if not c.template_of:
        return "it has an Istio sidecar" if SIDECAR_STATUS in c.meta.annotations else ""
    inject = c.labels.get(SIDECAR_INJECT)
    if inject == "true":
        return f"its template asks for a sidecar ({SIDECAR_INJECT}=true)"
    if ns_labels.get(INJECTION_LABEL) == "enabled" and inject != "false":
        return f"its namespace injects sidecars ({INJECTION_LABEL}=enabled)"
    return ""


def _capture(c: Consumer, site: Site, ctx: Context) -> list[Finding]:
    """L5: a binding only matters for traffic ambient captures."""
    if site.labels is not c.labels or c.kind not in ("Namespace", "Pod", "Service"):
        return []
    ns_labels = c.labels if c.kind == "Namespace" else ctx.view.namespace_labels(c.namespace)
    ns_ambient = ns_labels.get(DATAPLANE_MODE) == "ambient"
    if c.kind == "Pod":
        mode = c.labels.get(DATAPLANE_MODE)
        sidecar = _has_sidecar(c, ns_labels)
        captured = not c.host_network and not sidecar and (mode == "ambient" or (ns_ambient and mode != "none"))
        why = (
            "it uses hostNetwork"
            if c.host_network
            else sidecar or "neither it nor its namespace is dataplane-mode=ambient"
        )
    else:
        captured = ns_ambient
        why = f"namespace {c.namespace} is not labelled istio.io/dataplane-mode=ambient"
    if captured:
        return []
    return [
        Finding(
            Code.NotCaptured,
            f"{site.what}: not captured by ambient ({why}), so the waypoint has no effect",
            site.field(USE_WAYPOINT),
            _pair_triggers(site),
        )
    ]


_ALL = CONSUMER_KINDS
_RESOLUTION = (
    Code.CrossNamespaceWaypointForbidden,
    Code.StateUnavailable,
    Code.WaypointNotFound,
    Code.NotAWaypoint,
    Code.WaypointNotReady,
    Code.UnevaluableAllowedRoutes,
    Code.AttachmentDenied,
    Code.NamespaceWaypointTrafficType,
    Code.UnsupportedTrafficType,
)
REFERENCE_RULES: tuple[Rule[Consumer], ...] = (
    rule(
        reference_syntax,
        [Code.InvalidUseWaypointNamespace, Code.OrphanUseWaypointNamespace, Code.InvalidUseWaypoint],
        _ALL,
        "L1, L2, R4",
        stateless=True,
    ),
    rule(reference_binding, _RESOLUTION, _ALL, "R1, R3, R4, P1-P4, W1, W2, W6, V1"),
    rule(capture, [Code.NotCaptured], frozenset({"Namespace", "Pod", "Service"}), "L5"),
    rule(inherited_reference, _RESOLUTION, _ALL - {"Namespace"}, "R2, V1"),
    rule(
        canary,
        [
            Code.CanaryInvalidWeight,
            Code.CanarySameAsPrimary,
            Code.InvalidUseWaypoint,
            Code.InvalidUseWaypointNamespace,
            *_RESOLUTION,
        ],
        CANARY_KINDS,
        "R6",
    ),
    rule(needs_a_waypoint, [Code.ServiceEntryNeedsWaypoint], frozenset({"ServiceEntry"}), "V2"),
)


# --- A7: a Service's or ServiceEntry's binding, as the policies and routes that target it see it ----


@dataclass(frozen=True)
class Binding:
    """Whether istiod binds a Service or ServiceEntry to a waypoint (R1-R3, P1-P4, V1), and what
    that waypoint is; ``why`` is the cause when it is not bound, which istiod's status drops (Z7)."""

    waypoint: WaypointInfo | None
    why: str = ""
    istio: bool = True  # an Istio waypoint class, not a sandwich or a third-party class (Z3)

    @property
    def bound(self) -> bool:
        return self.waypoint is not None

    @property
    def where(self) -> str:
        return f"{self.waypoint.namespace}/{self.waypoint.name}" if self.waypoint else ""


def service_binding(kind: str, namespace: str, name: str, ctx: Context) -> Binding | None:
    """None when the object does not exist; the view must be synced. The primary reference only
    (R6's canary shares the Service's traffic, it never replaces the binding)."""
    labels = ctx.view.service_labels(kind, namespace, name)
    if labels is None:
        return None
    c = Consumer(kind, Meta(name, namespace, "", labels, {}, False), labels, SERVICE_TRAFFIC)
    own = labels.get(USE_WAYPOINT)
    source = labels if own is not None else ctx.view.namespace_labels(namespace)
    value = source.get(USE_WAYPOINT)
    if value is None:
        return Binding(None, f"neither it nor namespace {namespace} has {USE_WAYPOINT}")
    if value == "none":
        return Binding(
            None, f"{'it' if own is not None else f'namespace {namespace}'} opts out with {USE_WAYPOINT}=none"
        )
    ref = (
        _well_formed(c, _object_site(c))
        if own is not None
        else (source.get(USE_WAYPOINT_NAMESPACE) or namespace, value)
    )
    if ref is None:
        return Binding(None, f"its {USE_WAYPOINT} {quoted(value)} is no waypoint name")
    outcomes = _outcomes(c, SERVICE_TRAFFIC, ref, ctx, None, own is None)
    if resolved(outcomes) and kind == "ServiceEntry":
        outcomes += _visibility(c, ref, ctx, None)
    blocking = next((o for o in outcomes if not o.istiod_binds), None)
    if blocking is not None:
        return Binding(None, blocking.text)
    gw = ctx.view.gateway(*ref)
    assert gw is not None  # resolved: the Gateway exists
    if not gw.usable:
        return Binding(
            None, f"waypoint {ref[0]}/{ref[1]} has no Hostname or IP address, so ztunnel sends nothing to it"
        )
    return Binding(gw, istio=ctx.is_waypoint_class(gw.class_name))
