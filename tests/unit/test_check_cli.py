"""The offline ``check`` command: seed workflows, JSON format, exit statuses (issue 2 item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from webhook.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]
SEED = sorted(str(p) for p in (ROOT / "examples" / "seed").glob("*.yaml"))
STATE = str(ROOT / "examples" / "state")


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["check", "-o", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_seed_workflows_all_pass_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for f in SEED for a in ("-f", f)]
    code, results = run_json(capsys, *args)
    assert code == 0
    assert [(r["kind"], r["namespace"], r["name"]) for r in results] == [
        ("Namespace", "", "default"),
        ("Namespace", "", "common-infrastructure"),
        ("Namespace", "", "cross-namespace-waypoint-consumer"),
        ("Gateway", "default", "waypoint"),
        ("Namespace", "", "default"),
        ("Gateway", "default", "reviews-svc-waypoint"),
        ("Service", "default", "reviews"),
        ("Gateway", "default", "reviews-v2-pod-waypoint"),
        ("Pod", "default", "reviews-v2-5b667bcbf8-spnnh"),
        ("Gateway", "common-infrastructure", "egress-gateway"),
        ("ServiceEntry", "cross-namespace-waypoint-consumer", "istio-site"),
    ]
    assert all(r["allowed"] for r in results)
    # Nothing is ready yet in a dry pipeline: only WaypointNotReady warnings, never a denial.
    assert {f["code"] for r in results for f in r["findings"]} == {"WaypointNotReady"}
    # The seed's egress-gateway has no waypoint-for label; M2 is off by default, so it stays
    # that way (istiod reads the class's default at run time).
    egress = results[9]
    assert egress["name"] == "egress-gateway" and egress["patch"] == []
    assert set(results[0]) == {"apiVersion", "kind", "namespace", "name", "allowed", "findings", "patch", "source"}


def test_seed_cross_namespace_order_matters(capsys: pytest.CaptureFixture[str]) -> None:
    """The ServiceEntry before its waypoint exists: a warning, never a deny (B1)."""
    code, _results = run_json(capsys, "-f", SEED[-1], "--state", str(ROOT / "examples" / "seed" / "01-namespaces.yaml"))
    assert code == 0


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("service-none-typo.yaml", "InvalidUseWaypoint"),
        ("service-on-workload-waypoint.yaml", "UnsupportedTrafficType"),
        ("cross-namespace-denied.yaml", "AttachmentDenied"),
        ("gateway-lowercase-hbone.yaml", "MissingMeshListener"),
        ("gateway-bad-waypoint-for.yaml", "InvalidWaypointFor"),
        ("deployment-template-typo.yaml", "InvalidUseWaypoint"),
    ],
)
def test_broken_examples_are_denied(capsys: pytest.CaptureFixture[str], name: str, code: str) -> None:
    status, results = run_json(capsys, "--state", STATE, "-f", str(ROOT / "examples" / "broken" / name))
    assert status == 1 and not results[0]["allowed"]
    assert any(f["code"] == code and f["severity"] == "deny" for f in results[0]["findings"])


def test_invalid_yaml_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n")
    assert main(["check", "-f", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "invalid YAML" in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-f", "/nonexistent.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_text_output_groups_by_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--state", STATE, "-f", str(ROOT / "examples" / "broken" / "service-none-typo.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Service default/ratings") and "DENIED" in out[0]
    assert out[1].strip().startswith("deny  InvalidUseWaypoint:")


def test_strict_preset_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {istio.io/use-waypoint: ghost}}\n")
    assert main(["check", "-f", str(f)]) == 0
    capsys.readouterr()
    assert main(["check", "--preset", "strict", "-f", str(f)]) == 1


def test_malformed_document_is_denied_not_crashed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: [a]}\n")
    code, results = run_json(capsys, "-f", str(f))
    assert code == 1 and results[0]["findings"][0]["code"] == "MalformedObject"


def test_console_script_and_stdin() -> None:
    exe = Path(sys.executable).parent / "waypoint-webhook"
    doc = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {istio.io/use-waypoint: None}}\n"
    p = subprocess.run([str(exe), "check", "-f", "-"], input=doc, capture_output=True, text=True)
    assert p.returncode == 1 and "InvalidUseWaypoint" in p.stdout


def test_directories_recursion_and_several_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: as a CI pipeline calls it, with directories (-R) and paths a shell expanded."""
    import shutil

    shutil.copytree(ROOT / "examples" / "broken", tmp_path / "broken")
    (tmp_path / "broken" / "nested").mkdir()
    shutil.copy(ROOT / "examples" / "seed" / "01-namespaces.yaml", tmp_path / "broken" / "nested" / "ns.yaml")
    flat = json.loads((main(["check", "-o", "json", str(tmp_path / "broken")]), capsys.readouterr().out)[1])
    deep = json.loads((main(["check", "-o", "json", "-R", "-f", str(tmp_path / "broken")]), capsys.readouterr().out)[1])
    assert len(deep) > len(flat) and all(":" in r["source"] for r in deep)
    two = sorted(str(p) for p in (tmp_path / "broken").glob("*.yaml"))[:2]
    code = main(["check", "-o", "json", *two])
    assert {r["source"].rsplit(":", 1)[0] for r in json.loads(capsys.readouterr().out)} == set(two)
    assert code == 1


def test_only_findings_and_denials_first(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(ROOT / "examples" / "seed" / "01-namespaces.yaml"), str(ROOT / "examples" / "broken")]
    main(["check", "--only-findings", *files])
    out = capsys.readouterr().out.splitlines()
    verdicts = [
        line.split(": ", 1)[1]
        for line in out
        if line and not line.startswith(" ") and ": " in line and "object(s) checked" not in line
    ]
    assert verdicts and all(v.startswith(("DENIED", "allowed")) for v in verdicts)
    first_allowed = next(i for i, v in enumerate(verdicts) if v.startswith("allowed"))
    assert all(v.startswith("DENIED") for v in verdicts[:first_allowed])
    assert not any(line.startswith("Namespace ") for line in out)  # the seed's namespaces are clean: left out
    main(["check", *files])
    assert any(line.startswith("Namespace ") for line in capsys.readouterr().out.splitlines())


def test_sarif_points_at_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    f = ROOT / "examples" / "broken" / "service-none-typo.yaml"
    assert main(["check", "-o", "sarif", "-f", str(f)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    result = next(r for r in run["results"] if r["ruleId"] == "InvalidUseWaypoint")
    assert result["ruleId"] in rule_ids and result["level"] == "error"
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == str(f) and loc["region"]["startLine"] >= 1
