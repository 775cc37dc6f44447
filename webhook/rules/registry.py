"""Every rule, in the order its findings are reported. The engine runs these tables; docs and
tests read them (each code emitted by some rule, each rule's codes documented)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.findings import Code
from webhook.rules.gateways import CLASS_RULES, GATEWAY_RULES
from webhook.rules.impact import DELETE_RULES, UPDATE_RULES
from webhook.rules.references import CONSUMER_RULES
from webhook.rules.rule import Rule

__all__ = ["CLASS_RULES", "CONSUMER_RULES", "DELETE_RULES", "GATEWAY_RULES", "UPDATE_RULES", "all_rules"]


def all_rules() -> Iterator[Rule[Any]]:
    yield from GATEWAY_RULES
    yield from CLASS_RULES
    yield from CONSUMER_RULES
    yield from DELETE_RULES
    yield from UPDATE_RULES


def emitted_codes() -> frozenset[Code]:
    return frozenset(c for r in all_rules() for c in r.codes)
