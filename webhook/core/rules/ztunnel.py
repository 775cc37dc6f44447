"""Policies without ``targetRefs`` on ambient workloads (docs/rules.md A7: Z2, Z4, Z5, Z11).

A selector or namespace-wide policy never reaches a waypoint. An AuthorizationPolicy of that
kind goes to ztunnel instead, translated to L4: HTTP attributes are dropped (a whole ALLOW rule, a
DENY attribute by attribute), ``trustDomains`` is dropped without a word, and an entry left with
nothing becomes an empty match that ztunnel never matches. istiod's own message calls the DENY
case "more restrictive than requested"; for an entry made only of HTTP attributes it is the
opposite, the DENY never denies. Everything else of that kind (RequestAuthentication, Telemetry,
WasmPlugin, TrafficExtension, EnvoyFilter) is applied by nothing at all in ambient.

Whether the policy reaches captured workloads is judged from its namespace: the root namespace
(mesh-wide) or a namespace labelled ``istio.io/dataplane-mode=ambient``. The view does not hold
every Pod, so a Pod that opts in or out on its own is not seen; the finding says "ambient
namespace" to be exact about what was checked.
"""

from __future__ import annotations

from webhook.core.dependents import POLICY_KINDS, AuthzRule, Entry, WaypointPolicy
from webhook.core.findings import Code, Finding
from webhook.core.model import DATAPLANE_MODE
from webhook.core.rules.context import Context
from webhook.core.rules.rule import Rule, rule
from webhook.core.rules.targets import root_namespace

NOT_APPLIED_IN_AMBIENT = frozenset({"RequestAuthentication", "WasmPlugin", "TrafficExtension", "EnvoyFilter"})
_RULES = (("spec", "rules"), ("spec", "action"))


def reaches_ambient(p: WaypointPolicy, ctx: Context) -> str | None:
    """Z2: where a policy without targetRefs meets captured workloads, or None; worked out once per
    judgement (every rule of this module asks)."""
    if "reaches_ambient" not in ctx.memo:
        ctx.memo["reaches_ambient"] = _reaches_ambient(p, ctx)
    where: str | None = ctx.memo["reaches_ambient"]
    return where


def _reaches_ambient(p: WaypointPolicy, ctx: Context) -> str | None:
    if p.targets or not ctx.view.synced():
        return None
    if p.namespace == root_namespace(ctx):
        return "the mesh's ambient workloads (root namespace)" if not p.has_selector else "ambient workloads mesh-wide"
    if ctx.view.namespace_labels(p.namespace).get(DATAPLANE_MODE) != "ambient":
        return None
    return f"ambient namespace {p.namespace}"


def ignored_by_waypoint(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z2, Z11: waypoints ignore selector and namespace-wide policies; ztunnel reads only
    AuthorizationPolicies (an L4-only one is the intended ambient use and gets no finding)."""
    where = reaches_ambient(p, ctx)
    if where is None or (p.kind == "Telemetry" and not p.has_selector):  # Z2: namespace-wide Telemetry applies
        return []
    how = "selector" if p.has_selector else "namespace-wide"
    if p.kind == "AuthorizationPolicy":
        if not any(r.has_l7 for r in p.rules):
            return []
        text = f"{p.display()}: {how} policy in {where}; waypoints ignore it, so its HTTP rules apply nowhere; use targetRefs"
    else:
        fate = "nothing in ambient applies it" if p.kind in NOT_APPLIED_IN_AMBIENT else "waypoints ignore it"
        text = f"{p.display()}: {how} policy in {where}; {fate}; use targetRefs to a Service or waypoint"
    field = (
        "spec.workloadSelector"
        if p.kind == "EnvoyFilter" and p.has_selector
        else "spec.selector"
        if p.has_selector
        else "spec"
    )
    return [Finding(Code.SelectorPolicyIgnoredByWaypoint, text, field, (("spec",),))]


def unsupported_action(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z4: AUDIT and CUSTOM, and a dry-run policy, are not sent to ztunnel at all."""
    where = reaches_ambient(p, ctx)
    if where is None:
        return []
    if p.action in ("AUDIT", "CUSTOM"):
        text = f"{p.display()}: ztunnel does not support the {p.action} action, so it has no effect in {where}"
        return [Finding(Code.ZtunnelUnsupportedAction, text, "spec.action", (("spec", "action"),))]
    if p.dry_run:
        text = (
            f"{p.display()}: ztunnel does not support dry-run policies (off by default), so it has no effect in {where}"
        )
        return [
            Finding(
                Code.ZtunnelUnsupportedAction,
                text,
                "metadata.annotations[istio.io/dry-run]",
                (("metadata", "annotations"),),
            )
        ]
    return []


def _sent(p: WaypointPolicy, ctx: Context, action: str) -> str | None:
    """Where ztunnel enforces this AuthorizationPolicy with ``action``, or None (Z4: not sent)."""
    if p.action != action or p.dry_run:
        return None
    return reaches_ambient(p, ctx)


def _dropped_why(r: AuthzRule) -> str | None:
    if r.has_l7:
        names = sorted({a for e in r.entries for a in e.l7})
        return f"has HTTP attributes ({', '.join(names)})"
    if r.never_matches:
        return "has an entry made only of trustDomains, which ztunnel does not translate"
    return None


def allow_rules(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z5, ALLOW: a rule with an HTTP attribute is omitted whole, one whose entry keeps nothing
    never matches; when no rule is left, the policy refuses every connection (the waypoint's too)."""
    where = _sent(p, ctx, "ALLOW")
    if where is None or not p.rules:
        return []
    dropped = [(r, why) for r in p.rules if (why := _dropped_why(r)) is not None]
    if dropped and len(dropped) == len(p.rules):
        text = (f"{p.display()}: ztunnel omits every rule (HTTP attributes or trustDomains), so it allows nothing: "
                f"all connections in {where} it selects are refused, the waypoint's included")  # fmt: skip
        return [Finding(Code.ZtunnelAllowsNothing, text, "spec.rules", _RULES)]
    return [
        Finding(
            Code.ZtunnelAllowRuleDropped,
            f"{p.display()}: {r.field} {why}; ztunnel omits it in {where}",
            r.field,
            _RULES,
        )
        for r, why in dropped
    ]


def _ignored(p: WaypointPolicy, r: AuthzRule, e: Entry) -> Finding:
    what = ", ".join((*e.l7, *e.untranslated))
    consequence = "so the rule never denies" if r.never_matches else "so that part never denies"
    text = f"{p.display()}: {e.field} has only {what}, which ztunnel drops; it never matches, {consequence}"
    return Finding(Code.ZtunnelDenyRuleIgnored, text, e.field, _RULES)


def deny_rules(p: WaypointPolicy, ctx: Context) -> list[Finding]:
    """Z5, DENY: attributes are dropped one by one; an entry left with nothing never matches (the
    DENY fails open), an entry left with its L4 part denies more than written."""
    where = _sent(p, ctx, "DENY")
    if where is None:
        return []
    out: list[Finding] = []
    for r in p.rules:
        for e in r.entries:
            if e.empty_at_ztunnel:
                out.append(_ignored(p, r, e))
            elif e.l4 and (e.l7 or e.untranslated):
                what = ", ".join((*e.l7, *e.untranslated))
                text = (
                    f"{p.display()}: {e.field}: ztunnel drops {what} and denies on {', '.join(e.l4)} alone, in {where}"
                )
                out.append(Finding(Code.ZtunnelDenyRuleWidened, text, e.field, _RULES))
    return out


_AP = frozenset({"AuthorizationPolicy"})
ZTUNNEL_RULES: tuple[Rule[WaypointPolicy], ...] = (
    rule(ignored_by_waypoint, [Code.SelectorPolicyIgnoredByWaypoint], POLICY_KINDS, "Z2, Z11"),
    rule(unsupported_action, [Code.ZtunnelUnsupportedAction], _AP, "Z4"),
    rule(allow_rules, [Code.ZtunnelAllowRuleDropped, Code.ZtunnelAllowsNothing], _AP, "Z5"),
    rule(deny_rules, [Code.ZtunnelDenyRuleIgnored, Code.ZtunnelDenyRuleWidened], _AP, "Z5"),
)
