"""The one rule dispatcher: for each role of the table of kinds, how an object is parsed, whether
it is in scope, and which rule table judges it; for a DELETE or an UPDATE, which request-level
(impact) table runs.

The engine asks only this. Every judgement gets a fresh :class:`Context` (its ``memo`` is what
one object's rules have worked out, never what another request's did), and the engine parses
each version of an object once per request and hands the parsed subject here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from webhook.core.dependents import MeshRoute, WaypointPolicy, parse_policy, parse_route
from webhook.core.findings import Code, Finding
from webhook.core.kinds import Role
from webhook.core.model import Consumer, parse_consumer, parse_gateway, parse_gateway_class
from webhook.core.rules.context import Context
from webhook.core.rules.enforcement import (
    CLASS_UPDATE_RULES,
    GATEWAY_DELETE_ENFORCEMENT,
    GATEWAY_UPDATE_ENFORCEMENT,
    NAMESPACE_ENFORCEMENT,
    SERVICE_UPDATE_RULES,
)
from webhook.core.rules.gateways import CLASS_RULES, GATEWAY_RULES, in_scope
from webhook.core.rules.impact import DELETE_RULES, NAMESPACE_UPDATE_RULES, UPDATE_RULES
from webhook.core.rules.labels import LABEL_RULES
from webhook.core.rules.meshroutes import ROUTE_RULES
from webhook.core.rules.references import REFERENCE_RULES, is_waypoint_instance
from webhook.core.rules.rule import Rule, RuleTable, run
from webhook.core.rules.targets import TARGET_RULES
from webhook.core.rules.ztunnel import ZTUNNEL_RULES

S = TypeVar("S")

# Consumers: the labels themselves first, then what they reference.
CONSUMER_RULES: RuleTable[Consumer] = RuleTable(*LABEL_RULES, *REFERENCE_RULES)

# Policies (A7): what their targets can be and meet, then what ztunnel makes of them.
POLICY_RULES: RuleTable[WaypointPolicy] = RuleTable(*TARGET_RULES, *ZTUNNEL_RULES)
MESH_ROUTE_RULES: RuleTable[MeshRoute] = RuleTable(*ROUTE_RULES)

# Codes the engine emits itself, not a rule: an object it cannot parse.
ENGINE_CODES = frozenset({Code.MalformedObject})


def _always(subject: object, ctx: Context) -> bool:
    return True


def _consumer_in_scope(c: Consumer, ctx: Context) -> bool:
    """R0: a Gateway's own instance (its pods and Service) is never judged as a consumer."""
    return not c.excluded and not is_waypoint_instance(c, ctx)


@dataclass(frozen=True)
class Judge(Generic[S]):
    """How objects of one role are judged."""

    parse: Callable[[str, Mapping[str, Any], str], S]  # (kind, object, namespace); raises Malformed
    in_scope: Callable[[S, Context], bool]
    table: RuleTable[S]
    kind_of: Callable[[S], str]  # whose rules of the table apply (a pod template is judged as a Pod)

    def findings(self, subject: S, ctx: Context) -> list[Finding]:
        """Every rule of the table for this subject, with a context of its own."""
        fresh = ctx.fresh()
        if not self.in_scope(subject, fresh):
            return []
        return run(self.table, subject, self.kind_of(subject), fresh)


@dataclass(frozen=True)
class Registry:
    """Every role's judge and the request-level tables: the engine's whole view of the rules."""

    judges: Mapping[Role, Judge[Any]]
    on_delete: Mapping[Role, RuleTable[Any]] = field(default_factory=dict)  # subject: the old object
    on_update: Mapping[Role, RuleTable[Any]] = field(default_factory=dict)  # subject: (old, new)

    def tables(self) -> Iterator[RuleTable[Any]]:
        """Each table once, in the order findings are reported."""
        seen: list[RuleTable[Any]] = []
        for table in (*(j.table for j in self.judges.values()), *self.on_delete.values(), *self.on_update.values()):
            if not any(table is t for t in seen):
                seen.append(table)
                yield table

    def rules(self) -> Iterator[Rule[Any]]:
        for table in self.tables():
            yield from table

    def emitted_codes(self) -> frozenset[Code]:
        return frozenset(c for r in self.rules() for c in r.codes) | ENGINE_CODES

    def map_rules(self, change: Callable[[Rule[Any]], Rule[Any]]) -> Registry:
        """The same registry with every rule replaced by ``change(rule)`` (tests wrap rules so)."""
        mapped = {id(t): RuleTable(*map(change, t)) for t in self.tables()}
        return Registry(
            {role: Judge(j.parse, j.in_scope, mapped[id(j.table)], j.kind_of) for role, j in self.judges.items()},
            {role: mapped[id(t)] for role, t in self.on_delete.items()},
            {role: mapped[id(t)] for role, t in self.on_update.items()},
        )


_GATEWAY: Judge[Any] = Judge(lambda kind, raw, ns: parse_gateway(raw, ns), in_scope, GATEWAY_RULES, lambda _: "Gateway")
_CLASS: Judge[Any] = Judge(
    lambda kind, raw, ns: parse_gateway_class(raw), _always, CLASS_RULES, lambda _: "GatewayClass"
)
_CONSUMER: Judge[Consumer] = Judge(parse_consumer, _consumer_in_scope, CONSUMER_RULES, lambda c: c.kind)
_POLICY: Judge[WaypointPolicy] = Judge(parse_policy, _always, POLICY_RULES, lambda p: p.kind)
_ROUTE: Judge[MeshRoute] = Judge(parse_route, _always, MESH_ROUTE_RULES, lambda r: r.kind)

REGISTRY = Registry(
    judges={
        Role.GATEWAY: _GATEWAY,
        Role.CLASS: _CLASS,
        Role.NAMESPACE: _CONSUMER,
        Role.CONSUMER: _CONSUMER,
        Role.WORKLOAD: _CONSUMER,
        Role.POLICY: _POLICY,
        Role.ROUTE: _ROUTE,
    },
    # The impact tables: what a change does to the objects bound to it, and to the policies and
    # routes that apply through their waypoint (Z14).
    on_delete={Role.GATEWAY: RuleTable(*DELETE_RULES, GATEWAY_DELETE_ENFORCEMENT)},
    on_update={
        Role.GATEWAY: RuleTable(*UPDATE_RULES, GATEWAY_UPDATE_ENFORCEMENT),
        Role.NAMESPACE: RuleTable(*NAMESPACE_UPDATE_RULES, NAMESPACE_ENFORCEMENT),
        Role.CONSUMER: SERVICE_UPDATE_RULES,
        Role.CLASS: CLASS_UPDATE_RULES,
    },
)


def all_rules() -> Iterator[Rule[Any]]:
    return REGISTRY.rules()


def emitted_codes() -> frozenset[Code]:
    return REGISTRY.emitted_codes()
