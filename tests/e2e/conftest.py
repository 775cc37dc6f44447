"""End-to-end fixtures: real etcd + kube-apiserver, real ``waypoint-webhook serve`` with the live
view (authenticated as its own ServiceAccount, so RBAC is exercised), registered through the
project's own webhook configurations, and driven with the real kubectl."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.controlplane import ControlPlane, free_port, spawn
from tests.harness import Kubectl, apply_identity, probe_denial, running_cluster, webhook_configs

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "waypoint-webhook")
SA = "system:serviceaccount:waypoint-webhook:waypoint-webhook"


@dataclass
class Webhook:
    url: str
    ca: Path
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", verify=str(self.ca), timeout=5).text

    def stop(self, grace: float = 30) -> None:
        """SIGTERM, as kubelet stops it; SIGKILL after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("cp")) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubectl(cluster: ControlPlane) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


def start_webhook(
    cluster: ControlPlane,
    kubectl: Kubectl,
    workdir: Path,
    extra: list[str] | None = None,
    probe_port: int | None = None,
) -> Webhook:
    """``probe_port``: serve the probes there (plain HTTP) and wait for readiness on it."""
    certs = workdir / "certs"
    subprocess.run(
        [EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1", "--dns", "localhost"], check=True, capture_output=True
    )
    token = kubectl("create", "token", "waypoint-webhook", "-n", "waypoint-webhook", "--duration=6h").stdout.strip()
    kubeconfig = cluster.kubeconfig_for_token(token, workdir / "sa.kubeconfig")
    port = free_port()
    log = workdir / "webhook.log"
    args = [
        EXE,
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--tls-cert",
        str(certs / "tls.crt"),
        "--tls-key",
        str(certs / "tls.key"),
        "--log-level",
        "info",
        *(extra or []),
        *(["--probe-port", str(probe_port)] if probe_port else []),
    ]
    # As the Deployment does: a metrics directory that does not exist yet (serve creates it).
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "metrics")
    proc = spawn(args, log.open("wb"), env=env)
    wh = Webhook(f"https://127.0.0.1:{port}", certs / "ca.crt", proc, log, args)
    ready = f"http://127.0.0.1:{probe_port}/readyz" if probe_port else wh.url + "/readyz"
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


@pytest.fixture(scope="session")
def webhook(cluster: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    apply_identity(kubectl)
    wh = start_webhook(cluster, kubectl, tmp_path_factory.mktemp("webhook"))
    kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
    probe_denial(kubectl)
    yield wh
    wh.stop(15)


@pytest.fixture
def ns(kubectl: Kubectl, webhook: Webhook) -> str:
    """A fresh ambient namespace per test: without a controller-manager, namespaces never finish deleting."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "istio.io/dataplane-mode=ambient")
    return name
