"""The offline ``check`` command as a CI gate (issue 16): inputs as a CI user gives them, results
that do not depend on file order, nothing skipped in silence, exit codes that mean one thing, and
the CLI habits users expect. The formats CI systems read are tests/unit/test_ci_formats.py."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.builders import MESH, consumer, gateway, namespace
from webhook.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]
SEED = sorted(str(p) for p in (ROOT / "examples" / "seed").glob("*.yaml"))
STATE = str(ROOT / "examples" / "state")
EXE = Path(sys.executable).parent / "waypoint-webhook"
UW = "istio.io/use-waypoint"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", "-o", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def write(path: Path, *docs: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(d if isinstance(d, str) else yaml.safe_dump(d) for d in docs))
    return path


def repository(root: Path) -> Path:
    """A repository laid out as teams keep one: a team's Namespace and waypoint in one folder, its
    consumers rendered elsewhere, a Helm chart, a kustomization, CI config, a ConfigMap."""
    waypoint = gateway("wp", "team-a", labels={"istio.io/waypoint-for": "service"}, ready=False)
    write(root / "team-a" / "namespace.yaml", namespace("team-a", **{"istio.io/dataplane-mode": "ambient"}))
    write(root / "team-a" / "waypoint.yaml", waypoint)
    write(root / "rendered" / "svc.yaml", consumer("Service", "reviews", "team-a", {UW: "wp"}))
    write(root / "rendered" / "typo.yaml", consumer("Service", "ratings", "team-a", {UW: "None"}))
    write(root / "rendered" / "cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    write(root / "chart" / "Chart.yaml", {"apiVersion": "v2", "name": "chart", "version": "0.1.0"})
    (root / "chart" / "templates").mkdir(parents=True)
    (root / "chart" / "templates" / "svc.yaml").write_text("metadata:\n  name: {{ .Release.Name }}\n")
    write(root / "values.yaml", {"replicas": 2})
    write(root / "kustomization.yaml", {"resources": ["team-a"]})
    write(root / ".github" / "workflows" / "ci.yaml", {"on": "push", "jobs": {}})
    return root


# --- Inputs as a CI user gives them --------------------------------------------------------------


def test_a_repository_is_read_recursively_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, str(repository(tmp_path)))
    names = {(r["kind"], r["name"]) for r in report["results"]}
    assert names == {("Namespace", "team-a"), ("Gateway", "wp"), ("Service", "reviews"), ("Service", "ratings")}
    assert code == 1 and report["exitCode"] == 1, "the typo denies"
    reasons = {Path(s["source"].rsplit(":", 1)[0]).name: s["reason"] for s in report["skipped"]}
    assert reasons["chart"].startswith("a Helm chart") and reasons["values.yaml"] == "Helm values"
    assert reasons["kustomization.yaml"] == "kustomize configuration"
    assert reasons["ci.yaml"] == "not a Kubernetes object (no apiVersion and kind)"
    assert report["notJudged"] == {"ConfigMap (v1)": 1}, "counted, not printed"
    assert report["errors"] == []


def test_one_level_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository(tmp_path)
    _, report = run_json(capsys, "--no-recursive", "--allow-empty", str(tmp_path))
    assert report["results"] == []
    assert sorted(s["reason"] for s in report["skipped"]) == ["Helm values", "kustomize configuration"]


@pytest.mark.parametrize("layout", ["empty folder", "empty file", "only a chart"])
def test_nothing_to_check_is_exit_2_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    if layout == "empty file":
        (tmp_path / "empty.yaml").write_text("")
    elif layout == "only a chart":
        write(tmp_path / "Chart.yaml", {"apiVersion": "v2", "name": "c"})
    assert main(["check", str(tmp_path)]) == 2
    assert "nothing to check" in capsys.readouterr().out
    assert main(["check", "--allow-empty", str(tmp_path)]) == 0


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit", "github"])
def test_a_broken_file_is_named_and_every_other_file_still_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    repository(tmp_path)
    (tmp_path / "rendered" / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n")
    code = main(["check", "-o", fmt, str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2, "an input error outranks the denial"
    assert "bad.yaml" in out and "ratings" in out, "the error and the other files' results, in the same document"
    if fmt == "json":
        (error,) = json.loads(out)["errors"]
        assert re.search(r"rendered/bad\.yaml:\d+$", error["source"]) and error["message"].startswith("invalid YAML")


def test_a_missing_path_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "-f", "/nonexistent.yaml")
    assert code == 2 and report["errors"] == [{"source": "/nonexistent.yaml", "message": "no such file or directory"}]


def test_malformed_document_is_denied_not_crashed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "m.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: [a]}\n")
    code, report = run_json(capsys, "-f", str(f))
    assert code == 1 and report["results"][0]["findings"][0]["code"] == "MalformedObject"


def test_stdin_and_the_console_script() -> None:
    doc = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {istio.io/use-waypoint: None}}\n"
    p = subprocess.run([str(EXE), "check", "-f", "-"], input=doc, capture_output=True, text=True)
    assert p.returncode == 1 and "InvalidUseWaypoint" in p.stdout and "(<stdin>:1)" in p.stdout


# --- Order-independent judgement -----------------------------------------------------------------


def _normalised(out: str) -> str:
    return re.sub(r"\.yaml:\d+", ".yaml:N", out)


def test_results_do_not_depend_on_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository(tmp_path)
    files = sorted(str(p) for p in tmp_path.rglob("*.yaml") if "chart" not in str(p))
    outputs = set()
    for seed in range(6):
        random.Random(seed).shuffle(files)
        main(["check", "-o", "json", "--state", STATE, *files])
        outputs.add(capsys.readouterr().out)
    assert len(outputs) == 1, "byte-identical whatever order the files are named in"


def test_results_do_not_depend_on_document_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [
        consumer("Service", "reviews", "team-a", {UW: "wp"}),
        gateway("wp", "team-a", ready=False),
        namespace("team-a", **{"istio.io/dataplane-mode": "ambient"}),
        consumer("Pod", "p", "team-a", {UW: "wp"}),
    ]
    outputs = set()
    for seed in range(6):
        random.Random(seed).shuffle(docs)
        write(tmp_path / "all.yaml", *docs)
        main(["check", "-o", "json", str(tmp_path / "all.yaml")])
        report = json.loads(capsys.readouterr().out)
        outputs.add(json.dumps(sorted(report["results"], key=lambda r: (r["kind"], r["name"])), sort_keys=True))
    assert len({_normalised(o) for o in outputs}) == 1, "the same verdicts; only the line numbers move"


def test_input_waypoints_are_ready_unless_judged_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository(tmp_path)
    _, report = run_json(capsys, str(tmp_path / "team-a"), str(tmp_path / "rendered" / "svc.yaml"))
    assert all(r["findings"] == [] for r in report["results"]), "istiod will give the waypoint its address"
    _, written = run_json(capsys, "--as-written", str(tmp_path / "team-a"), str(tmp_path / "rendered" / "svc.yaml"))
    reviews = next(r for r in written["results"] if r["name"] == "reviews")
    assert [f["code"] for f in reviews["findings"]] == ["WaypointNotReady"]


def test_the_seed_workflows_pass_as_one_apply(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, *SEED)
    assert code == 0 and len(report["results"]) == 11
    assert all(r["allowed"] and r["findings"] == [] for r in report["results"])
    egress = next(r for r in report["results"] if r["name"] == "egress-gateway")
    assert egress["patch"] == [], "M2 is off: the seed's egress-gateway keeps its missing waypoint-for label"


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
    status, report = run_json(capsys, "--state", STATE, "-f", str(ROOT / "examples" / "broken" / name))
    (result,) = report["results"]
    assert status == 1 and not result["allowed"]
    assert any(f["code"] == code and f["severity"] == "deny" for f in result["findings"])


# --- Nothing skipped in silence ------------------------------------------------------------------


def _system_namespace_typo(tmp_path: Path) -> Path:
    return write(
        tmp_path / "sys.yaml",
        consumer("Service", "dns", "kube-system", {UW: "None"}),
        consumer("Service", "plain", "default"),
    )


def test_excluded_namespaces_are_judged_and_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _system_namespace_typo(tmp_path)
    code, report = run_json(capsys, str(f))
    dns = next(r for r in report["results"] if r["name"] == "dns")
    assert code == 1 and not dns["allowed"], "istiod reads kube-system's labels all the same (SPEC B3)"
    assert dns["admission"] == {"reviewed": False, "reason": "namespace kube-system is excluded"}
    plain = next(r for r in report["results"] if r["name"] == "plain")
    assert plain["admission"]["reviewed"] is False and "matchConditions" in plain["admission"]["reason"]
    monkeypatch.setenv("POD_NAMESPACE", "kube-system")
    monkeypatch.setenv("WAYPOINT_WEBHOOK_EXCLUDED_NAMESPACES", "default")
    assert run_json(capsys, str(f)) == (code, report), "a runner pod's environment changes nothing"


def test_admission_can_be_simulated_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _system_namespace_typo(tmp_path)
    code = main(["check", "--admission", "--allow-empty", str(f)])
    out = capsys.readouterr().out
    assert code == 0 and "DENIED" not in out
    assert "(not reviewed by admission: namespace kube-system is excluded)" in out
    assert "2 skipped" in out.splitlines()[-1]


# --- Exit codes ----------------------------------------------------------------------------------


def test_exit_codes_follow_the_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "s.yaml", consumer("Service", "s", "default", {UW: "ghost"}))
    assert main(["check", str(f)]) == 0, "a warning (WaypointNotFound) is below --fail-on deny"
    assert main(["check", "--fail-on", "warn", str(f)]) == 1
    assert main(["check", "--preset", "strict", str(f)]) == 1
    capsys.readouterr()


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server (127.0.0.1:9, the discard port) never answers."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    return write(path, config)


def test_an_unreachable_cluster_is_exit_3_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    f = write(tmp_path / "s.yaml", consumer("Service", "s", "default", {UW: "wp"}))
    code, report = run_json(capsys, "--kubeconfig", str(kubeconfig), str(f))
    assert code == 3 and report["clusterError"].startswith("cannot reach the API server at https://127.0.0.1:9")
    assert "\n" not in report["clusterError"]


def test_check_against_the_cluster_it_runs_in(tmp_path: Path) -> None:
    """``--cluster``: the in-cluster configuration of a CI runner's pod, else $KUBECONFIG."""
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(unreachable_kubeconfig(tmp_path / "kubeconfig"))
    f = write(tmp_path / "s.yaml", consumer("Service", "s", "default", {UW: "wp"}))
    p = subprocess.run([str(EXE), "check", "--cluster", "-o", "json", str(f)], capture_output=True, text=True, env=env)
    report = json.loads(p.stdout)
    assert p.returncode == 3 and report["clusterError"].startswith("cannot reach the API server at https://127.0.0.1:9")


# --- CLI habits ----------------------------------------------------------------------------------


def test_version_names_the_revision() -> None:
    p = subprocess.run([str(EXE), "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and re.fullmatch(r"waypoint-webhook \d+\.\d+\.\d+\S* \(revision \S+\)\n", p.stdout)


def test_a_closed_pipe_ends_quietly() -> None:
    p = subprocess.run(f"'{EXE}' codes | head -2", shell=True, capture_output=True, text=True)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 2 and p.stderr == ""


def test_abbreviated_and_unknown_flags_are_refused_with_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--only-finding", "--no-such-flag"):
        with pytest.raises(SystemExit) as e:
            main(["check", flag, "x.yaml"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("usage: waypoint-webhook check") and flag in err


def test_text_counts_what_was_checked_skipped_and_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repository(tmp_path)
    main(["check", "--only-findings", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Service team-a/ratings (") and "DENIED" in lines[0]
    assert not any(line.startswith(("ConfigMap", "Namespace ", "Gateway ")) for line in lines)
    assert lines[-1] == (
        "4 object(s) checked: 1 denied, 0 with warnings; 4 skipped; "
        "not judged (kinds the webhook does not handle): ConfigMap (v1) 1; 1 printed"
    )


def test_cluster_scoped_objects_have_no_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "ns.yaml", namespace("x", **{UW: "None"}))
    main(["check", str(f)])
    assert capsys.readouterr().out.startswith(f"Namespace x ({f}:")


def test_the_kubectl_plugin_runs_the_same_commands(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is a prerequisite of make test")
    f = write(tmp_path / "s.yaml", consumer("Service", "s", "default", {UW: "None"}))
    env = {**os.environ, "PATH": f"{EXE.parent}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(["kubectl", "waypoint", "check", str(f)], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "InvalidUseWaypoint" in p.stdout


def test_gateways_in_the_inputs_get_their_defaults_before_consumers_are_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M1 fills in the HBONE listener; the consumer is judged against the Gateway as stored."""
    bare = gateway("wp", "default", listeners=[], ready=False)
    del bare["spec"]["listeners"]
    ambient = namespace("default", **{"istio.io/dataplane-mode": "ambient"})
    f = write(tmp_path / "a.yaml", consumer("Service", "s", "default", {UW: "wp"}), bare, ambient)
    _, report = run_json(capsys, str(f))
    wp = next(r for r in report["results"] if r["kind"] == "Gateway")
    assert wp["patch"] and wp["allowed"] and MESH["port"] == 15008
    assert next(r for r in report["results"] if r["kind"] == "Service")["findings"] == []
