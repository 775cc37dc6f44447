"""istiod (pilot-discovery) built once and run out of cluster against a control plane of its own."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.controlplane import free_port, spawn
from testkit.harness import wait_until

HERE = Path(__file__).resolve().parent


def istiod_binary() -> Path:
    out = subprocess.run([str(HERE / "istiod" / "build.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"building istiod failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Istiod:
    proc: subprocess.Popen[bytes]
    http: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_istiod(kubeconfig: Path, workdir: Path, mesh_config: dict[str, Any] | None = None) -> Istiod:
    """``mesh_config``: istiod's MeshConfig (default: empty)."""
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = workdir / "mesh.yaml"
    mesh.write_text(json.dumps(mesh_config or {}) + "\n")
    ports = {n: free_port() for n in ("http", "grpc", "sgrpc", "mon", "https", "ctrlz")}
    args = [
        str(istiod_binary()),
        "discovery",
        f"--kubeconfig={kubeconfig}",
        f"--meshConfig={mesh}",
        "--domain=cluster.local",
        "--clusterID=Kubernetes",
        "--namespace=istio-system",
        f"--httpAddr=127.0.0.1:{ports['http']}",
        f"--grpcAddr=127.0.0.1:{ports['grpc']}",
        f"--secureGRPCAddr=127.0.0.1:{ports['sgrpc']}",
        f"--monitoringAddr=127.0.0.1:{ports['mon']}",
        f"--httpsAddr=127.0.0.1:{ports['https']}",
        "--ctrlz_address=127.0.0.1",
        f"--ctrlz_port={ports['ctrlz']}",
    ]
    env = {
        **os.environ,
        "PILOT_ENABLE_AMBIENT": "true",
        "POD_NAMESPACE": "istio-system",
        "POD_NAME": "istiod-oracle",
        "REVISION": "default",
        "CLUSTER_ID": "Kubernetes",
        "VALIDATION_WEBHOOK_CONFIG_NAME": "",
        "INJECTION_WEBHOOK_CONFIG_NAME": "",
        # replay mode: statuses come from the tests, not from Deployments istiod would create
        "PILOT_ENABLE_GATEWAY_API_STATUS": "false",
        "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER": "false",
        "PILOT_ENABLE_GATEWAY_API_GATEWAYCLASS_CONTROLLER": "false",
        "INJECT_ENABLED": "false",
    }
    log = workdir / "istiod.log"
    istiod = Istiod(spawn(args, log.open("wb"), env=env), ports["http"], log)

    def ready() -> bool:
        assert istiod.alive(), log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(istiod.url + "/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(ready, 90, "istiod to be ready")
    return istiod


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
