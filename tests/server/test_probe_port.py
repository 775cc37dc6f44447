"""The probe port as ``serve`` runs it (issue 18, item 4): ``/metrics`` and the probes come from a
process of their own, so admission never waits on them, a stuck probe process costs
admission nothing, and a probe port in use stops ``serve`` at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testkit.builders import review_body
from testkit.harness import EXE, wait_until
from tests.server.running import ROOT, Server, start_server, stop_server
from webhook.admission import tls

pytestmark = pytest.mark.server
GOOD = review_body(
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"}}, uid="probe-port"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, ROOT / "examples" / "state")
    yield srv
    stop_server(srv)


def find_probe_process(srv: Server) -> int | None:
    """The master's child running the probe port (started from a thread: every task's children)."""
    for task in Path(f"/proc/{srv.proc.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"webhook.admission.probes" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    return None


def probe_process(srv: Server) -> int:
    pid = find_probe_process(srv)
    assert pid is not None, "no probe process under the gunicorn master"
    return pid


def test_metrics_are_served_on_the_probe_port_only(server: Server) -> None:
    moved = requests.get(server.url + "/metrics", verify=server.ca, timeout=5)
    assert moved.status_code == 404 and "probe port" in moved.json()["error"]
    # /metrics is rendered at most once a second: a rendering from before the workers' first
    # writes may be served once; every worker synced (min over workers) shows within that second.
    wait_until(lambda: "waypoint_webhook_state_synced 1.0" in server.metrics(), 5, "the workers' metrics", 0.2)
    assert requests.get(server.probe + "/readyz", timeout=5).json() == {"status": "ready", "workers": 2}


def test_the_probe_process_yields_the_cpu_to_admission(server: Server) -> None:
    """SCHED_IDLE: a worker that wakes preempts it at once (a nice value would only share)."""
    assert os.sched_getscheduler(probe_process(server)) == os.SCHED_IDLE
    assert all(os.sched_getscheduler(int(w)) == os.SCHED_OTHER for w in workers(server))


def workers(srv: Server) -> list[str]:
    return Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()


def test_a_stuck_probe_process_costs_admission_nothing(server: Server) -> None:
    """SIGSTOP the probe process (what a scrape storm or a slow rendering could at worst do to it):
    reviews are still answered at once, while /metrics does not answer at all."""
    pid = probe_process(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(server.probe + "/metrics", timeout=1)
        for _ in range(20):
            started = time.monotonic()
            r = server.post("/validate", GOOD)
            assert r.status_code == 200 and r.json()["response"]["allowed"] is True
            assert time.monotonic() - started < 1
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "waypoint_webhook_admission_requests_total" in server.metrics()


def test_a_probe_port_in_use_stops_serve_with_one_line(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1"], check=True, capture_output=True)
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        p = subprocess.run(
            [EXE, "serve", "--host", "127.0.0.1", "--port", "0", "--probe-port", str(port),
             "--tls-cert", str(certs / "tls.crt"), "--tls-key", str(certs / "tls.key")],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")},
        )  # fmt: skip
    finally:
        taken.close()
    assert p.returncode == 2, p.stderr
    assert f"--probe-port {port}: Address already in use" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_probe_port_over_tls_verifies_with_the_ca_and_follows_a_rotation(tmp_path: Path) -> None:
    """``--probe-tls`` (issue 21 item 3): the probes and /metrics over TLS with the serving
    certificate, verifiable with the CA the ServiceMonitor is given, reloaded with the pair; plain
    HTTP is refused and admission goes on."""
    srv = start_server(tmp_path, ROOT / "examples" / "state", workers=1, probe_tls=True)
    try:
        assert srv.probe.startswith("https://")
        assert requests.get(srv.probe + "/readyz", verify=srv.ca, timeout=5).json()["status"] == "ready"
        wait_until(lambda: "waypoint_webhook_state_synced 1.0" in srv.metrics(), 5, "the metrics over TLS", 0.2)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(srv.probe.replace("https://", "http://") + "/healthz", timeout=5)
        old_ca = tmp_path / "old-ca.crt"
        old_ca.write_bytes(Path(srv.ca).read_bytes())
        tls.write(tls.issue(["localhost"], ["127.0.0.1"]), srv.certs)  # a new CA, a new pair

        def rotated() -> bool:
            try:
                return requests.get(srv.probe + "/healthz", verify=srv.ca, timeout=2).status_code == 200
            except requests.exceptions.SSLError:
                return False

        wait_until(rotated, 15, "the probe port to serve the new certificate", 0.1)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(srv.probe + "/healthz", verify=str(old_ca), timeout=2)
        assert srv.post("/validate", GOOD).json()["response"]["allowed"] is True
        assert srv.proc.poll() is None and "Traceback" not in srv.log.read_text()
    finally:
        stop_server(srv)
