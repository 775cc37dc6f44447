"""A real ``waypoint-webhook serve`` (gunicorn, gthread, TLS) on a loopback port, for the server and robustness tiers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from testkit.controlplane import free_port, spawn
from testkit.harness import EXE, serve_command

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    ca: str
    certs: Path
    state: Path
    proc: subprocess.Popen[bytes]
    log: Path
    probe: str  # the probe port's base URL (plain HTTP; https with --probe-tls)

    def metrics(self) -> str:
        return requests.get(self.probe + "/metrics", verify=self.ca, timeout=10).text

    def post(self, path: str, body: bytes, ctype: str = "application/json", **kw: Any) -> requests.Response:
        return requests.post(
            self.url + path, data=body, headers={"Content-Type": ctype}, verify=self.ca, timeout=10, **kw
        )


def start_server(
    tmp: Path, state_src: Path | None = None, extra: list[str] | None = None, workers: int = 2, probe_tls: bool = False
) -> Server:
    certs, state = tmp / "certs", tmp / "state"
    state.mkdir(parents=True, exist_ok=True)
    if state_src is not None:
        for f in state_src.glob("*.yaml"):
            shutil.copy(f, state / f.name)
    subprocess.run(
        [EXE, "certs", "--out", str(certs), "--dns", "localhost", "--ip", "127.0.0.1"], check=True, capture_output=True
    )
    port, probe = free_port(), free_port()
    log = tmp / "server.log"
    # As the Deployment does: a metrics directory that does not exist yet (serve creates it).
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics" / "multiproc")}
    proc = spawn(
        serve_command(
            port,
            certs,
            workers,
            "--state",
            str(state),
            "--state-poll-interval",
            "0.2",
            *(extra or []),
            *(["--probe-tls"] if probe_tls else []),
            probe_port=probe,
        ),
        log.open("wb"),
        env=env,
    )
    srv = Server(
        f"https://127.0.0.1:{port}",
        str(certs / "ca.crt"),
        certs,
        state,
        proc,
        log,
        f"{'https' if probe_tls else 'http'}://127.0.0.1:{probe}",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if all(
                requests.get(url + "/readyz", verify=srv.ca, timeout=1).status_code == 200
                for url in (srv.url, srv.probe)
            ):
                return srv
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server not ready: {log.read_text()}")


def stop_server(srv: Server) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
