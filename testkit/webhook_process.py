"""``waypoint-webhook serve`` against a control plane: started as its own ServiceAccount, stopped like kubelet stops it."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from testkit.controlplane import ControlPlane, free_port, spawn
from testkit.harness import EXE, Kubectl, probe_port_of, serve_command

ROOT = Path(__file__).resolve().parents[1]
SA = "system:serviceaccount:waypoint-webhook:waypoint-webhook"


@dataclass
class Webhook:
    url: str
    ca: Path
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]

    @property
    def probe(self) -> str:
        """The probe port's base URL (plain HTTP: /healthz, /readyz, /metrics)."""
        return f"http://127.0.0.1:{probe_port_of(self.args)}"

    def metrics(self) -> str:
        return requests.get(self.probe + "/metrics", timeout=5).text

    def stop(self, grace: float = 30) -> None:
        """SIGTERM, as kubelet stops it; SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_webhook(
    cluster: ControlPlane,
    kubectl: Kubectl,
    workdir: Path,
    extra: list[str] | None = None,
    probe_port: int | None = None,
    namespace: str = "waypoint-webhook",
    env_extra: dict[str, str] | None = None,
    port: int | None = None,
) -> Webhook:
    """Ready when the probe port (``probe_port``, else a free one) says so, as kubelet sees it. Runs
    as the ServiceAccount ``waypoint-webhook`` of ``namespace``, with the serving pair in
    ``workdir/certs`` (made for 127.0.0.1 unless already there)."""
    certs = workdir / "certs"
    if not (certs / "tls.crt").exists():
        subprocess.run(
            [EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1", "--dns", "localhost"],
            check=True,
            capture_output=True,
        )
    token = kubectl("create", "token", "waypoint-webhook", "-n", namespace, "--duration=6h").stdout.strip()
    kubeconfig = cluster.kubeconfig_for_token(token, workdir / "sa.kubeconfig")
    port = port or free_port()
    log = workdir / "webhook.log"
    args = [
        *serve_command(
            port,
            certs,
            2,
            "--kubeconfig",
            str(kubeconfig),
            "--log-level",
            "info",
            *(extra or []),
            probe_port=probe_port,
        ),
    ]
    # As the Deployment does: a metrics directory that does not exist yet (serve creates it).
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "metrics")
    env["POD_NAMESPACE"] = namespace
    env.update(env_extra or {})
    proc = spawn(args, log.open("wb"), env=env)
    wh = Webhook(f"https://127.0.0.1:{port}", certs / "ca.crt", proc, log, args)
    ready = wh.probe + "/readyz"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(ready, verify=str(wh.ca), timeout=1).status_code == 200:
                return wh
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"webhook not ready:\n{log.read_text()}"
        time.sleep(0.2)
