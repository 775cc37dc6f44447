"""Every rule, in the order its findings are reported. The engine runs these tables; docs and
tests read them (each code emitted by some rule, each rule's codes documented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.findings import Code, Finding
from webhook.model import Consumer
from webhook.rules.context import Context
from webhook.rules.gateways import CLASS_RULES, GATEWAY_RULES
from webhook.rules.impact import DELETE_RULES, UPDATE_RULES
from webhook.rules.labels import LABEL_RULES
from webhook.rules.references import REFERENCE_RULES, is_waypoint_instance
from webhook.rules.rule import Rule, RuleTable, run

# Consumers: the labels themselves first, then what they reference.
CONSUMER_RULES: RuleTable[Consumer] = RuleTable(*LABEL_RULES, *REFERENCE_RULES)

__all__ = [
    "CLASS_RULES",
    "CONSUMER_RULES",
    "DELETE_RULES",
    "GATEWAY_RULES",
    "UPDATE_RULES",
    "all_rules",
    "judge_consumer",
]


def judge_consumer(c: Consumer, ctx: Context) -> list[Finding]:
    """Every consumer rule for the object's kind; none for a Gateway's own instance (R0)."""
    if c.excluded or is_waypoint_instance(c, ctx):
        return []
    return run(CONSUMER_RULES, c, c.kind, ctx.fresh())


def all_rules() -> Iterator[Rule[Any]]:
    yield from GATEWAY_RULES
    yield from CLASS_RULES
    yield from CONSUMER_RULES
    yield from DELETE_RULES
    yield from UPDATE_RULES


def emitted_codes() -> frozenset[Code]:
    return frozenset(c for r in all_rules() for c in r.codes)
