"""The differential tier: the real istiod as the oracle for how waypoint configuration resolves.

One kube-apiserver with the Gateway API and every Istio CRD; istiod (pilot-discovery, built from
the Go module proxy by ``istiod/build.sh``) runs out of cluster against it in "replay" mode:
its Gateway controllers are off and the tests write each Gateway's ``status.addresses``
themselves. The webhook under test runs beside it with its live view, *not* registered, so
that every case, broken ones included, reaches the cluster for istiod to resolve.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.crds import crd_documents, istio_crds_file
from tests.e2e.conftest import Webhook, start_webhook
from tests.e2e.controlplane import ControlPlane, free_port, spawn
from tests.harness import Kubectl, apply_identity, install_crds, running_cluster, wait_until

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


def start_istiod(kubeconfig: Path, workdir: Path) -> Istiod:
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = workdir / "mesh.yaml"
    mesh.write_text("{}\n")
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


def _setup(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crd_documents((istio_crds_file(),))))
    kubectl("create", "namespace", "istio-system")


@pytest.fixture(scope="session")
def oracle_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("oracle-cp"), setup=_setup) as cp:
        yield cp


@pytest.fixture(scope="session")
def oracle_kubectl(oracle_cluster: ControlPlane) -> Kubectl:
    return Kubectl(oracle_cluster.kubeconfig)


@pytest.fixture(scope="session")
def istiod(oracle_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Istiod]:
    proc = start_istiod(oracle_cluster.kubeconfig, tmp_path_factory.mktemp("istiod"))
    yield proc
    stop(proc.proc)


@pytest.fixture(scope="session")
def unregistered_webhook(
    oracle_cluster: ControlPlane, oracle_kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    apply_identity(oracle_kubectl)
    wh = start_webhook(oracle_cluster, oracle_kubectl, tmp_path_factory.mktemp("oracle-webhook"))
    yield wh
    stop(wh.proc)
