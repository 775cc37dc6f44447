"""End-to-end fixtures: real etcd + kube-apiserver, real ``waypoint-webhook serve`` with the live
view (authenticated as its own ServiceAccount, so RBAC is exercised), registered through the
project's own webhook configurations, and driven with the real kubectl."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.crds import ISTIO, gateway_api_files
from tests.e2e.controlplane import ControlPlane, free_port

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).parent / "waypoint-webhook")
SA = "system:serviceaccount:waypoint-webhook:waypoint-webhook"
ISTIO_CRDS = ("serviceentries.networking.istio.io", "workloadentries.networking.istio.io")


@dataclass
class Kubectl:
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def apply(self, docs: Any, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs if isinstance(docs, list) else [docs])
        return self("apply", "-f", "-", *extra, input=text, check=check)


@dataclass
class Webhook:
    url: str
    ca: Path
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", verify=str(self.ca), timeout=5).text


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("cp"))
    cp.start()
    k = Kubectl(cp.kubeconfig)
    # Gateway API v1.3.0 standard CRDs (server-side: HTTPRoute's is too large for client-side apply)
    for f in gateway_api_files():
        k("apply", "--server-side", "-f", str(f))
    istio = [d for d in yaml.safe_load_all(ISTIO.read_text()) if d and d["metadata"]["name"] in ISTIO_CRDS]
    k("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(istio))
    k("wait", "--for=condition=Established", "--timeout=60s", "crd/gateways.gateway.networking.k8s.io",
      "crd/gatewayclasses.gateway.networking.k8s.io", *(f"crd/{c}" for c in ISTIO_CRDS))
    deadline = time.monotonic() + 60
    while "serviceentries" not in k("api-resources", "--api-group=networking.istio.io", check=False).stdout or \
            "gateways" not in k("api-resources", "--api-group=gateway.networking.k8s.io", check=False).stdout:
        assert time.monotonic() < deadline, "CRDs not discoverable"
        time.sleep(0.5)
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def kubectl(cluster: ControlPlane) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


def rendered_manifests(kubectl: Kubectl) -> list[dict[str, Any]]:
    out = kubectl("kustomize", str(ROOT / "manifests")).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def webhook_configs(kubectl: Kubectl, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The project's own configurations, with clientConfig.service replaced by a loopback URL."""
    bundle = base64.b64encode(ca_pem).decode()
    out = []
    for doc in rendered_manifests(kubectl):
        if doc["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        for wh in doc["webhooks"]:
            path = wh["clientConfig"]["service"]["path"]
            wh["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        out.append(doc)
    return out


def start_webhook(cluster: ControlPlane, kubectl: Kubectl, workdir: Path, extra: list[str] | None = None) -> Webhook:
    certs = workdir / "certs"
    subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1", "--dns", "localhost"], check=True,
                   capture_output=True)
    token = kubectl("create", "token", "waypoint-webhook", "-n", "waypoint-webhook", "--duration=6h").stdout.strip()
    kubeconfig = cluster.kubeconfig_for_token(token, workdir / "sa.kubeconfig")
    port = free_port()
    log = workdir / "webhook.log"
    args = [EXE, "serve", "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--tls-cert", str(certs / "tls.crt"), "--tls-key", str(certs / "tls.key"),
            "--log-level", "info", *(extra or [])]
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "KUBECONFIG")}
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    wh = Webhook(f"https://127.0.0.1:{port}", certs / "ca.crt", proc, log, args)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(wh.url + "/readyz", verify=str(wh.ca), timeout=1).status_code == 200:
                return wh
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"webhook not ready:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def webhook(cluster: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    # The project's namespace and least-privilege RBAC, exactly as shipped.
    docs = [d for d in rendered_manifests(kubectl) if d["kind"] in
            ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    kubectl.apply(docs)
    wh = start_webhook(cluster, kubectl, tmp_path_factory.mktemp("webhook"))
    kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
    # Configurations take effect asynchronously: probe with a dry run the webhook must deny.
    probe = {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "probe", "namespace": "default", "labels": {"istio.io/use-waypoint": "None"}},
        "spec": {"ports": [{"port": 80}]}}
    deadline = time.monotonic() + 60
    while "InvalidUseWaypoint" not in kubectl.apply(probe, "--dry-run=server", check=False).stderr:
        assert time.monotonic() < deadline, f"webhook never took effect:\n{wh.log.read_text()}"
        time.sleep(0.5)
    yield wh
    wh.proc.terminate()
    try:
        wh.proc.wait(15)
    except subprocess.TimeoutExpired:
        wh.proc.kill()


@pytest.fixture
def ns(kubectl: Kubectl, webhook: Webhook) -> str:
    """A fresh ambient namespace per test: without a controller-manager, namespaces never finish deleting."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "istio.io/dataplane-mode=ambient")
    return name
