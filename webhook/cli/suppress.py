"""``--suppress CODE=KIND/NAMESPACE/NAME`` for CI, as ``istioctl analyze --suppress`` users write
them: globs in every part (``WaypointNotReady=*/team-*/*``); a cluster-scoped object is
``KIND/NAME``. A suppressed finding is still reported (as suppressed, with the rule that matched)
and never counts toward the exit status. Admission has no such thing: a suppression is a CI
decision about known state, never a way through the webhook.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from webhook.core.findings import CODES, Judged
from webhook.core.result import Result


@dataclass(frozen=True)
class Suppression:
    code: str
    kind: str
    namespace: str
    name: str
    text: str  # as given, for the summary and SARIF's justification

    @classmethod
    def parse(cls, text: str) -> Suppression:
        code, sep, target = text.partition("=")
        parts = target.split("/")
        if not sep or not code or len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"--suppress {text!r} must look like CODE=KIND/NAMESPACE/NAME (or CODE=KIND/NAME)")
        if not any(fnmatch.fnmatchcase(str(c), code) for c in CODES):
            raise ValueError(f"--suppress {text!r}: no finding code matches {code!r}")
        kind, namespace, name = (parts[0], "", parts[1]) if len(parts) == 2 else parts
        return cls(code, kind, namespace, name, text)

    def matches(self, code: str, kind: str, namespace: str, name: str) -> bool:
        return (
            fnmatch.fnmatchcase(code, self.code)
            and fnmatch.fnmatchcase(kind, self.kind)
            and fnmatch.fnmatchcase(namespace, self.namespace)
            and fnmatch.fnmatchcase(name, self.name)
        )


def parse_all(items: Iterable[str]) -> tuple[Suppression, ...]:
    return tuple(Suppression.parse(item) for item in items)


def apply(result: Result, rules: Sequence[Suppression]) -> Result:
    """The result with the findings a rule matches moved to ``suppressed``."""
    if not rules:
        return result
    ref = result.ref
    kept: list[Judged] = []
    gone: list[Judged] = []
    for j in result.findings:
        hit = any(s.matches(str(j.code), ref.kind, ref.namespace, ref.name) for s in rules)
        (gone if hit else kept).append(j)
    if not gone:
        return result
    return replace(result, findings=tuple(kept), suppressed=(*result.suppressed, *gone))


def used(results: Iterable[Result], rules: Sequence[Suppression]) -> dict[str, int]:
    """How many findings each rule set aside (the summary lists them, unused ones included)."""
    counts = dict.fromkeys((s.text for s in rules), 0)
    for r in results:
        for j in r.suppressed:
            for s in rules:
                if s.matches(str(j.code), r.ref.kind, r.ref.namespace, r.ref.name):
                    counts[s.text] += 1
                    break
    return counts
