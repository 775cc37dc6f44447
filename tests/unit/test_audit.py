"""``audit`` over --state files: every stored object judged as admission would, filters, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from testkit.builders import consumer, gateway, ns_labels
from webhook.cli.commands import main

UW = "istio.io/use-waypoint"


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    """A stored cluster: a broken Service, one that inherits a deleted waypoint, and a healthy one."""
    docs = [
        ns_labels("shop", {"istio.io/dataplane-mode": "ambient", UW: "gone"}),
        ns_labels("kube-system", {}),
        gateway("waypoint", "shop"),
        consumer("Service", "typo", "shop", {UW: "None"}),
        consumer("Service", "inherits", "shop"),
        consumer("Service", "fine", "shop", {UW: "waypoint"}),
        consumer("Service", "system", "kube-system", {UW: "None"}),  # excluded from admission, not from audit
    ]
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", *args])
    return code, capsys.readouterr().out


def test_text_groups_by_namespace_with_denials_first(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "--state", str(cluster))
    assert code == 1, "denials found: --fail-on deny is the default"
    lines = out.splitlines()
    # the Namespace itself names the deleted waypoint too
    assert lines[-1] == "4 object(s) with findings: 2 would be denied, 2 warned"
    shop = lines.index("namespace shop")
    assert lines.index("namespace kube-system") < shop
    assert lines[shop + 1].startswith("  Service typo: DENIED")
    assert any("Service inherits: warnings" in line for line in lines[shop:])
    assert "fine" not in out


def test_json_has_the_check_shape_and_the_source(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _run(capsys, "--state", str(cluster), "-o", "json")
    entries = {e["name"]: e for e in json.loads(out)["results"]}
    typo = entries["typo"]
    assert typo["allowed"] is False and typo["findings"][0]["code"] == "InvalidUseWaypoint"
    assert typo["source"].startswith(str(cluster / "cluster.yaml") + ":")
    assert entries["inherits"]["findings"][0] == {
        "code": "WaypointNotFound",
        "severity": "warn",
        "field": "namespace shop labels[istio.io/use-waypoint]",
        "message": entries["inherits"]["findings"][0]["message"],
    }


@pytest.mark.parametrize(
    ("args", "names", "status"),
    [
        (["--namespace", "shop"], {"shop", "typo", "inherits"}, 1),
        (["--code", "WaypointNotFound"], {"shop", "inherits"}, 0),
        (["--min-severity", "deny"], {"typo", "system"}, 1),
        (["--fail-on", "deny"], {"shop", "typo", "inherits", "system"}, 1),
        (["--fail-on", "warn", "--code", "WaypointNotFound"], {"shop", "inherits"}, 1),
        (["--fail-on", "deny", "--code", "WaypointNotFound"], {"shop", "inherits"}, 0),
    ],
)
def test_filters_and_exit_status(
    cluster: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: set[str], status: int
) -> None:
    code, out = _run(capsys, "--state", str(cluster), "-o", "json", *args)
    assert code == status
    report = json.loads(out)
    assert {e["name"] for e in report["results"]} == names and report["exitCode"] == status


def test_unusable_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    assert main(["audit", "--state", str(tmp_path)]) == 2
    assert main(["audit", "--state", str(tmp_path), "--code", "NoSuchCode"]) == 2


def test_suppressions_are_listed_and_do_not_count(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "--state", str(cluster), "-o", "json", "--suppress", "InvalidUseWaypoint=Service/*/*")
    report = json.loads(out)
    assert code == 0, "the only denials are suppressed"
    typo = next(e for e in report["results"] if e["name"] == "typo")
    assert typo["findings"] == [] and typo["suppressed"][0]["code"] == "InvalidUseWaypoint"
    assert report["suppressions"] == {"InvalidUseWaypoint=Service/*/*": 2}


def test_environment_never_changes_what_audit_judges(
    cluster: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plain = _run(capsys, "--state", str(cluster), "-o", "json")
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    monkeypatch.setenv("WAYPOINT_WEBHOOK_PRESET", "strict")
    _, with_env = _run(capsys, "--state", str(cluster), "-o", "json")
    assert plain == with_env


def test_a_repository_as_state_skips_charts_and_names_broken_files(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cluster / "chart" / "templates").mkdir(parents=True)
    (cluster / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: c\n")
    (cluster / "chart" / "templates" / "svc.yaml").write_text("metadata:\n  name: {{ .Release.Name }}\n")
    (cluster / "broken.yaml").write_text("kind: [\n")
    code, out = _run(capsys, "--state", str(cluster), "-o", "json")
    report = json.loads(out)
    assert code == 2, "an unreadable file is an input error"
    assert {e["name"] for e in report["results"]} >= {"typo", "inherits"}, "every other file is still audited"
    assert [e["source"].rsplit("/", 1)[1] for e in report["errors"]] == ["broken.yaml:2"]
    assert report["skipped"][0]["reason"].startswith("a Helm chart")


def test_objects_admission_never_reviews_are_marked(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _run(capsys, "--state", str(cluster), "-o", "json")
    found = {e["name"]: e for e in json.loads(out)["results"]}
    assert found["system"]["admission"] == {"reviewed": False, "reason": "namespace kube-system is excluded"}
    assert found["inherits"]["admission"]["reviewed"] is False, "no waypoint label: the matchConditions skip it"
    assert found["typo"]["admission"] == {"reviewed": True, "reason": ""}
    _, text = _run(capsys, "--state", str(cluster))
    assert "  Service system: DENIED (not reviewed by admission: namespace kube-system is excluded)" in text
