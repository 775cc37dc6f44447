"""What ``check`` and ``audit`` tell a pipeline: every object judged, skipped or not judged, every
input error, and an exit status that means one thing.

Exit statuses (the same for both commands):

- 0: no finding at or above ``--fail-on`` (default ``deny``);
- 1: a finding at or above ``--fail-on``;
- 2: a usage or input error (a file that cannot be read or parsed, nothing to check);
- 3: the cluster could not be read (unreachable, forbidden, a CRD missing for a kind asked for).

The higher status wins. Whatever the status, the requested document (text, JSON, SARIF, JUnit,
GitHub annotations) is written whole, with the errors in it: an upload step never gets an empty
file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from webhook.cli.suppress import Suppression, used
from webhook.cluster.inputs import InputError, Skipped
from webhook.core.findings import Severity
from webhook.core.result import Result, printable

OK, FINDINGS, INPUT_ERROR, CLUSTER_ERROR = 0, 1, 2, 3


@dataclass
class Report:
    command: str  # "check" or "audit"
    results: list[Result] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    not_judged: Counter[str] = field(default_factory=Counter)  # "Kind (apiVersion)" -> objects
    errors: list[InputError] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # what the run could not do, in a sentence each
    suppressions: tuple[Suppression, ...] = ()
    fail_on: Severity = Severity.DENY
    cluster_error: str = ""
    allow_empty: bool = False
    only_findings: bool = False
    files: int = 0

    def failing(self) -> list[Result]:
        return [r for r in self.results if r.worst() >= self.fail_on]

    def exit_code(self) -> int:
        if self.cluster_error:
            return CLUSTER_ERROR
        if self.errors or self.nothing_to_check():
            return INPUT_ERROR
        return FINDINGS if self.failing() else OK

    def nothing_to_check(self) -> bool:
        return self.command == "check" and not self.results and not self.allow_empty

    def shown(self) -> list[Result]:
        """The results printed: with ``--only-findings``, those with findings (suppressed included)."""
        if not self.only_findings:
            return self.results
        return [r for r in self.results if r.findings or r.suppressed]

    def summary(self) -> dict[str, Any]:
        return {
            "checked": len(self.results),
            "denied": sum(not r.allowed for r in self.results),
            "warned": sum(r.allowed and r.worst() is Severity.WARN for r in self.results),
            "notReviewedByAdmission": sum(bool(r.not_reviewed) for r in self.results),
            "suppressed": sum(len(r.suppressed) for r in self.results),
            "skipped": len(self.skipped),
            "notJudged": sum(self.not_judged.values()),
            "errors": len(self.errors),
            "printed": len(self.shown()),
            "files": self.files,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "exitCode": self.exit_code(),
            "summary": self.summary(),
            "results": [r.to_json() for r in self.shown()],
            "skipped": [s.to_json() for s in sorted(self.skipped, key=lambda s: s.source)],
            "notJudged": dict(sorted(self.not_judged.items())),
            "errors": [e.to_json() for e in sorted(self.errors, key=lambda e: e.source)],
            "notices": self.notices,
            "suppressions": used(self.results, self.suppressions),
            "clusterError": self.cluster_error,
        }


def _object_lines(r: Result) -> list[str]:
    verdict = "allowed" if r.allowed else "DENIED"
    extra = f", defaults added: {', '.join(op['path'] for op in r.patch)}" if r.patch else ""
    unseen = f" (not reviewed by admission: {r.not_reviewed})" if r.not_reviewed else ""
    lines = [f"{printable(r.ref.display())} ({printable(r.source)}): {verdict}{extra}{unseen}"]
    lines += [f"  {f.severity!s:<4}  {f.code}: {printable(f.message)}  [{f.field}]" for f in r.findings]
    lines += [f"  supp  {f.code}: {printable(f.message)}  [{f.field}]" for f in r.suppressed]
    return lines


def summary_line(report: Report) -> str:
    s = report.summary()
    parts = [f"{s['checked']} object(s) checked: {s['denied']} denied, {s['warned']} with warnings"]
    if s["notReviewedByAdmission"]:
        parts.append(f"{s['notReviewedByAdmission']} not reviewed by admission")
    if s["suppressed"]:
        parts.append(f"{s['suppressed']} finding(s) suppressed")
    if s["skipped"]:
        parts.append(f"{s['skipped']} skipped")
    if report.not_judged:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.not_judged.items()))
        parts.append(f"not judged (kinds the webhook does not handle): {kinds}")
    if s["errors"]:
        parts.append(f"{s['errors']} input error(s)")
    if report.only_findings:
        parts.append(f"{s['printed']} printed")
    return "; ".join(parts)


def render_text(report: Report) -> str:
    """Denied objects first, then those with warnings, then the rest (each group in input order);
    then what was skipped, the errors, and one summary line."""
    lines: list[str] = []
    for r in sorted(report.shown(), key=lambda r: (r.allowed, not r.findings)):
        lines += _object_lines(r)
    lines += [f"skipped: {printable(s.source)} ({s.reason})" for s in sorted(report.skipped, key=lambda s: s.source)]
    lines += [
        f"error: {printable(e.source)}: {printable(e.message)}" for e in sorted(report.errors, key=lambda e: e.source)
    ]
    lines += [f"note: {n}" for n in report.notices]
    if report.cluster_error:
        lines.append(f"error: {report.cluster_error}")
    if report.nothing_to_check():
        lines.append("error: nothing to check: no Kubernetes object among the inputs (--allow-empty accepts that)")
    lines.append(summary_line(report))
    return "\n".join(lines)
