"""Start-up under a pod's constraints: what ``serve`` needs on disk it creates, and a
misconfiguration stops it at once with one clear line and status 2 (never workers that fail to
boot one after another, which a pod shows as a crash loop behind a fail-closed webhook)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from testkit.harness import EXE
from tests.server.running import start_server, stop_server

pytestmark = pytest.mark.server


def test_metrics_directory_that_does_not_exist_is_created_and_stale_files_removed(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics" / "multiproc"  # what start_server passes, as the Deployment does
    metrics.mkdir(parents=True)
    (metrics / "counter_99999.db").write_bytes(b"stale from an earlier run")
    srv = start_server(tmp_path)
    try:
        assert not (metrics / "counter_99999.db").exists()
        body = srv.metrics()
        assert "waypoint_webhook_state_synced" in body
        assert list(metrics.glob("*.db")), "workers write their metrics there"
    finally:
        stop_server(srv)


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    certs = tmp_path / "certs"
    if not certs.exists():
        subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1"], check=True, capture_output=True)
    base = [
        EXE,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "1",
        "--tls-cert",
        str(certs / "tls.crt"),
        "--tls-key",
        str(certs / "tls.key"),
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})})


@pytest.mark.parametrize(
    ("case", "args", "env", "says"),
    [
        (
            "unwritable metrics directory",
            [],
            {"PROMETHEUS_MULTIPROC_DIR": "/proc/waypoint-webhook"},
            "PROMETHEUS_MULTIPROC_DIR=/proc/waypoint-webhook",
        ),
        ("missing certificate", ["--tls-cert", "/nonexistent/tls.crt"], {}, "/nonexistent/tls.crt"),
        (
            "no cluster configuration",
            ["--cluster"],
            {"KUBECONFIG": "/nonexistent/kubeconfig", "KUBERNETES_SERVICE_HOST": ""},
            "no in-cluster configuration",
        ),
        ("broken state file", ["--state", "{state}"], {}, "state.yaml:3: invalid YAML"),
        ("audit without a cluster", ["--audit"], {}, "--audit needs --cluster"),
    ],
)
def test_misconfiguration_fails_fast_with_one_line(
    tmp_path: Path, case: str, args: list[str], env: dict[str, str], says: str
) -> None:
    state = tmp_path / "state.yaml"
    state.write_text("kind: Namespace\nmetadata: [unclosed\n")
    t = time.monotonic()
    p = _serve(tmp_path, *[a.replace("{state}", str(state)) for a in args], env=env)
    assert p.returncode == 2, (case, p.stdout, p.stderr)
    assert time.monotonic() - t < 10
    errors = [line for line in p.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) == 1 and says in errors[0], (case, p.stderr)
    assert "Booting worker" not in p.stderr and "Worker failed to boot" not in p.stderr
