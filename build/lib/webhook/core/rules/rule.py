"""What a rule is: one small pure function, declared with the codes it emits and the kinds it
applies to (docs/rules.md, "Adding a rule").

A rule takes its subject (a parsed Gateway, GatewayClass, consumer, or for the impact rules the
old and new Gateway) and the :class:`~webhook.core.rules.context.Context`, and returns findings. It
never decides a final severity (the policy does) and never does I/O (the context's view is
read-only and in memory). The dispatcher (:mod:`webhook.core.dispatch`) says which table judges
which role, in the order findings are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from webhook.core.findings import Code, Finding
from webhook.core.rules.context import Context

S = TypeVar("S")


@dataclass(frozen=True)
class Rule(Generic[S]):
    check: Callable[[S, Context], list[Finding]]
    codes: frozenset[Code]
    kinds: frozenset[str]  # the kinds whose objects it judges (a pod template is judged as a Pod)
    ids: str  # the rule IDs of docs/rules.md it implements, e.g. "L1, R1"
    # Needs nothing but the object: its denials are also enforced by the ValidatingAdmissionPolicies
    # of manifests/fail-open/ (webhook.core.policies; a unit test keeps the two in step).
    stateless: bool = False

    @property
    def name(self) -> str:
        return self.check.__name__


def rule(
    check: Callable[[S, Context], list[Finding]],
    codes: Iterable[Code],
    kinds: Iterable[str],
    ids: str,
    stateless: bool = False,
) -> Rule[S]:
    return Rule(check, frozenset(codes), frozenset(kinds), ids, stateless)


class RuleTable(Generic[S]):
    """Rules in the order their findings are reported, with each kind's selection made once:
    the engine runs a table per object judged."""

    def __init__(self, *rules: Rule[S]) -> None:
        self.rules = rules
        kinds = {k for r in rules for k in r.kinds}
        self.by_kind: dict[str, tuple[Rule[S], ...]] = {k: tuple(r for r in rules if k in r.kinds) for k in kinds}

    def __iter__(self) -> Iterator[Rule[S]]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


def run(table: RuleTable[S], subject: S, kind: str, ctx: Context) -> list[Finding]:
    """Every rule of the table for ``kind``, in order."""
    out: list[Finding] = []
    for r in table.by_kind.get(kind, ()):
        found = r.check(subject, ctx)
        if found:
            out += found
    return out
