"""``make bench-check``: ``check`` on a repository as teams keep one, as a CI job runs it.

The repository: 66 teams, each with a Namespace, a waypoint, Services, Deployments, a ConfigMap
and rendered manifests in a folder of their own, plus Helm charts, kustomizations and CI files
(at least 500 files in all, a few per team broken). Each run is the installed command in a fresh
process, with ``-o sarif`` to a file; the figures are the median wall time and the peak RSS over
the runs (the target: under 2 s and under 100 MB).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "waypoint-webhook"
UW = "istio.io/use-waypoint"


def _meta(name: str, ns: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
    if labels:
        m["labels"] = labels
    return m


def _team(root: Path, n: int) -> None:
    ns = f"team-{n:02d}"
    base = root / "teams" / ns
    base.mkdir(parents=True)
    labels = {"istio.io/dataplane-mode": "ambient", UW: "waypoint"}
    (base / "namespace.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, labels=labels)})
    )
    gw = {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}
    (base / "waypoint.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": _meta("waypoint", ns),
                "spec": gw,
            }
        )
    )
    rendered = root / "rendered" / ns
    rendered.mkdir(parents=True)
    for i in range(3):
        svc_labels = {UW: "None" if i == 2 and n % 10 == 0 else "waypoint"}
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(f"svc-{i}", ns, svc_labels),
            "spec": {"ports": [{"port": 80}]},
        }
        template = {
            "metadata": {"labels": {"app": f"svc-{i}"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        deploy = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(f"svc-{i}", ns),
            "spec": {"selector": {"matchLabels": {"app": f"svc-{i}"}}, "template": template},
        }
        (rendered / f"svc-{i}.yaml").write_text(yaml.safe_dump_all([svc, deploy]))
    (rendered / "config.yaml").write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("config", ns), "data": {"k": "v" * 200}}
        )
    )
    (base / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["namespace.yaml", "waypoint.yaml"]}))


def repository(root: Path, teams: int = 66) -> int:
    for n in range(teams):
        _team(root, n)
    for c in range(20):
        chart = root / "charts" / f"chart-{c}"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": f"chart-{c}", "version": "1.0.0"})
        )
        (chart / "values.yaml").write_text("replicas: 2\n")
        (chart / "templates" / "svc.yaml").write_text("metadata:\n  name: {{ .Release.Name }}\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yaml").write_text("on: push\njobs: {}\n")
    return sum(1 for p in root.rglob("*") if p.is_file())


def run_once(root: Path, out: Path) -> tuple[float, int]:
    """Wall seconds and the child's peak RSS in KiB (getrusage's children figure is the largest
    child so far, so each run is measured in a process of its own)."""
    probe = (
        "import resource,subprocess,sys,time;"
        "t=time.perf_counter();"
        "p=subprocess.run(sys.argv[2:],stdout=open(sys.argv[1],'wb'));"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)"
    )
    cmd = [sys.executable, "-c", probe, str(out), str(EXE), "check", "-o", "sarif", str(root)]
    wall, rss, code = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    assert int(code) == 1, f"the repository's broken Services deny (exit {code})"
    return float(wall), int(rss)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        root = Path(tmp) / "repo"
        files = repository(root)
        runs = [run_once(root, Path(tmp) / "sarif") for _ in range(5)]
        report = json.loads((Path(tmp) / "sarif").read_text())
    walls = [w for w, _ in runs]
    peak = max(r for _, r in runs) / 1024
    results = len(report["runs"][0]["results"])
    print(f"# check on a repository of {files} files, -o sarif ({results} results), 5 runs")
    print(f"wall seconds: median {statistics.median(walls):.2f} (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"peak RSS: {peak:.0f} MB")
    return 0 if statistics.median(walls) < 2.0 and peak < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
