"""The documents CI systems read: SARIF 2.1.0 (code scanning), JUnit XML (test reports) and GitHub
workflow commands (annotations), each from a :class:`~webhook.cli.report.Report`.

Locations point at the line and column of the key a finding names (the label, the listener, the
selector) when the input was a file; paths are given relative to the working directory, which
SARIF calls ``SRCROOT``, percent-encoded from the bytes of the name (spaces, ``#``, ``%`` and
names that are no UTF-8 all survive the trip).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from webhook.cli.report import INPUT_ERROR, Report
from webhook.cluster.inputs import STDIN
from webhook.core.findings import CODES, Judged, Severity
from webhook.core.result import Result, printable

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "SRCROOT"
# (result, finding) -> (line, column) of the finding's key; None where the input was no file.
Locator = Callable[[Result, Judged | None], tuple[int, int] | None]


def split_source(source: str) -> tuple[str, int | None]:
    path, _, line = source.rpartition(":")
    return (path, int(line)) if line.isdigit() and path else (source, None)


def relative(path: str, cwd: Path) -> tuple[str, bool]:
    """``path`` relative to ``cwd`` when it lies below it (True), else absolute (False)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(cwd)), True
    except ValueError:
        return str(absolute), False


def artifact(path: str, cwd: Path) -> dict[str, Any]:
    """A SARIF artifactLocation: a percent-encoded URI reference, relative to SRCROOT if it can be."""
    if path == STDIN:
        return {"uri": urllib.parse.quote(STDIN), "description": {"text": "standard input"}}
    rel, below = relative(path, cwd)
    quoted = urllib.parse.quote(os.fsencode(rel), safe="/")
    if below:
        return {"uri": quoted, "uriBaseId": SRCROOT}
    return {"uri": "file://" + quoted}


def _level(severity: Severity) -> str:
    return "error" if severity is Severity.DENY else "warning"


def _rules(help_texts: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(code),
            "name": str(code),
            "shortDescription": {"text": info.summary},
            "fullDescription": {"text": info.summary},
            "help": {"text": help_texts.get(code, info.summary), "markdown": help_texts.get(code, info.summary)},
            "defaultConfiguration": {"level": _level(info.default)},
        }
        for code, info in CODES.items()
    ]


def _location(r: Result, j: Judged | None, locate: Locator, cwd: Path) -> dict[str, Any]:
    logical = {"fullyQualifiedName": printable("/".join(p for p in (r.ref.kind, r.ref.namespace, r.ref.name) if p))}
    path, line = split_source(r.source)
    if line is None and path != STDIN:
        return {"logicalLocations": [logical]}  # from a cluster, not a file
    where = locate(r, j) or ((line, 1) if line else None)
    physical: dict[str, Any] = {"artifactLocation": artifact(path, cwd)}
    if where:
        physical["region"] = {"startLine": where[0], "startColumn": where[1]}
    return {"physicalLocation": physical, "logicalLocations": [logical]}


def _result(r: Result, j: Judged, locate: Locator, cwd: Path, rule_index: Mapping[str, int]) -> dict[str, Any]:
    who = r.ref.display()
    text = j.message if who in j.message else f"{who}: {j.message}"
    return {
        "ruleId": str(j.code),
        "ruleIndex": rule_index[j.code],
        "level": _level(j.severity),
        "message": {"text": printable(f"{text} [{j.field}]")},
        "locations": [_location(r, j, locate, cwd)],
    }


def _notifications(report: Report, cwd: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for level, source, text in (
        *(("error", e.source, e.message) for e in report.errors),
        *(("note", s.source, f"skipped: {s.reason}") for s in report.skipped),
    ):
        path, line = split_source(source)
        physical: dict[str, Any] = {"artifactLocation": artifact(path, cwd)}
        if line:
            physical["region"] = {"startLine": line}
        out.append(
            {"level": level, "message": {"text": printable(text)}, "locations": [{"physicalLocation": physical}]}
        )
    out += [{"level": "warning", "message": {"text": n}} for n in report.notices]
    if report.cluster_error:
        out.append({"level": "error", "message": {"text": report.cluster_error}})
    return out


def sarif(report: Report, locate: Locator, version: str, help_texts: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    rule_index = {str(code): n for n, code in enumerate(CODES)}
    results: list[dict[str, Any]] = []
    for r in report.results:
        results += [_result(r, j, locate, cwd, rule_index) for j in r.findings]
        for j in r.suppressed:
            suppressed = _result(r, j, locate, cwd, rule_index)
            suppressed["suppressions"] = [{"kind": "external", "justification": "--suppress"}]
            results.append(suppressed)
    code = report.exit_code()
    invocation: dict[str, Any] = {"executionSuccessful": code < INPUT_ERROR, "exitCode": code}
    invocation["toolExecutionNotifications"] = _notifications(report, cwd)
    driver = {"name": "waypoint-webhook", "version": version, "semanticVersion": version.split("+")[0]}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {**driver, "rules": _rules(help_texts)}},
                "originalUriBaseIds": {SRCROOT: {"uri": cwd.as_uri() + "/"}},
                "invocations": [invocation],
                "results": results,
            }
        ],
    }


def _testcase(suite: ET.Element, r: Result, report: Report, cwd: Path) -> tuple[int, int]:
    path, line = split_source(r.source)
    case = ET.SubElement(
        suite, "testcase", name=printable(r.ref.display()), classname=printable(relative(path, cwd)[0])
    )
    if line:
        case.set("file", printable(relative(path, cwd)[0]))
        case.set("line", str(line))
    failing = [j for j in r.findings if j.severity >= report.fail_on]
    if failing:
        f = ET.SubElement(case, "failure", message=printable(failing[0].line()), type=str(failing[0].code))
        f.text = "\n".join(printable(f"{j.severity} {j.line()} [{j.field}]") for j in failing)
    rest = [j for j in r.findings if j.severity < report.fail_on]
    if rest or r.not_reviewed:
        out = ET.SubElement(case, "system-out")
        notes = [printable(f"{j.severity} {j.line()} [{j.field}]") for j in rest]
        out.text = "\n".join([*notes, *([f"not reviewed by admission: {r.not_reviewed}"] if r.not_reviewed else [])])
    return (1 if failing else 0), 0


def junit(report: Report, cwd: Path) -> bytes:
    """JUnit XML: one test case per object judged (failed when it has a finding at ``--fail-on``),
    one skipped case per thing skipped, one errored case per input error."""
    root = ET.Element("testsuites", name="waypoint-webhook")
    suite = ET.SubElement(root, "testsuite", name=f"waypoint-webhook {report.command}")
    failures = sum(_testcase(suite, r, report, cwd)[0] for r in report.results)
    for s in report.skipped:
        case = ET.SubElement(suite, "testcase", name=printable(s.source), classname="skipped")
        ET.SubElement(case, "skipped", message=s.reason)
    problems = [(e.source, e.message) for e in report.errors] + (
        [("cluster", report.cluster_error)] * bool(report.cluster_error)
    )
    for source, message in problems:
        case = ET.SubElement(suite, "testcase", name=printable(source), classname="input")
        ET.SubElement(case, "error", message=printable(message), type="InputError")
    counts = {"tests": len(report.results) + len(report.skipped) + len(problems), "failures": failures}
    counts |= {"errors": len(problems), "skipped": len(report.skipped)}
    for element in (root, suite):
        for key, value in counts.items():
            element.set(key, str(value))
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, props: Mapping[str, str]) -> str:
    joined = ",".join(f"{k}={_escape_property(v)}" for k, v in props.items() if v)
    return f"::{kind}{' ' + joined if joined else ''}::{_escape_data(message)}"


def github(report: Report, locate: Locator, cwd: Path) -> str:
    """GitHub Actions workflow commands: an error or warning annotation per finding at its key."""
    lines = []
    for r in report.results:
        path, line = split_source(r.source)
        for j in r.findings:
            where = locate(r, j) or ((line, 1) if line else None)
            kind = "error" if j.severity >= report.fail_on else "warning" if j.severity is Severity.WARN else "notice"
            props = {"file": printable(relative(path, cwd)[0]) if line else "", "title": str(j.code)}
            if where:
                props |= {"line": str(where[0]), "col": str(where[1])}
            who = r.ref.display()
            text = j.message if who in j.message else f"{who}: {j.message}"
            lines.append(_command(kind, printable(f"{text} [{j.field}]"), props))
    for e in report.errors:
        path, line = split_source(e.source)
        props = {"file": printable(relative(path, cwd)[0]), "line": str(line or ""), "title": "input error"}
        lines.append(_command("error", printable(e.message), props))
    if report.cluster_error:
        lines.append(_command("error", report.cluster_error, {"title": "cluster"}))
    return "\n".join(lines)
