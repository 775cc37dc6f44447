"""Helpers shared by the end-to-end and pod tiers: kubectl, waiting, a leak-proof control plane
with the CRDs installed, and the project's rendered manifests."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from testkit.controlplane import ControlPlane, free_port, spawn
from testkit.crds import GATEWAY_API_MODULE, gateway_api_files, istio_crds, openreports_files, policy_report_files

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "waypoint-webhook")
ISTIO_CRDS = (
    "serviceentries.networking.istio.io",
    "workloadentries.networking.istio.io",
    # A7: the policies that need a waypoint
    "authorizationpolicies.security.istio.io",
    "requestauthentications.security.istio.io",
    "telemetries.telemetry.istio.io",
    "wasmplugins.extensions.istio.io",
    "trafficextensions.extensions.istio.io",
    "envoyfilters.networking.istio.io",
)
T = TypeVar("T")


def serve_command(port: int, certs: Path, workers: int, *extra: str, probe_port: int | None = None) -> list[str]:
    """``waypoint-webhook serve`` on 127.0.0.1:``port`` with the pair in ``certs`` (tls.crt, tls.key),
    and its probe port on a free port unless given (:func:`probe_port_of` reads it back)."""
    return [
        EXE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--tls-cert", str(certs / "tls.crt"), "--tls-key", str(certs / "tls.key"),
        "--probe-port", str(probe_port or free_port()), *extra,
    ]  # fmt: skip


def probe_port_of(argv: list[str]) -> int:
    """The ``--probe-port`` of a serve command line (the last one wins, as in argparse)."""
    return int([argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--probe-port"][-1])


def patch_status(kubectl: Kubectl, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
    """Write an object's status, as its controller would (istiod for a Gateway's addresses, W1)."""
    kubectl("patch", kind.lower(), name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))  # fmt: skip


def make_ready(kubectl: Kubectl, name: str, namespace: str, ip: str = "10.0.0.50") -> None:
    """Play istiod: publish the waypoint's address in status (W1)."""
    patch_status(kubectl, "Gateway", name, namespace, {"addresses": [{"type": "IPAddress", "value": ip}]})


def eventually(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.2) -> T:
    """Poll ``cond`` until it returns something truthy; then, or at ``timeout``, its last result
    (watches, webhook configurations and reloads are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(interval)


def wait_until(
    cond: Callable[[], T | Literal[False, 0, ""] | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """:func:`eventually`, failing naming ``what`` when nothing truthy came."""
    got = eventually(cond, timeout, interval)
    if not got:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
    return got


@dataclass
class Kubectl:
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def apply(self, docs: Any, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs if isinstance(docs, list) else [docs])
        return self("apply", "-f", "-", *extra, input=text, check=check)


def install_crds(kubectl: Kubectl, gateway_api: str = GATEWAY_API_MODULE) -> None:
    """Gateway API's standard channel (v1.6 unless told) and Istio's ServiceEntry/WorkloadEntry,
    then wait until discoverable."""
    for f in gateway_api_files(gateway_api):  # server-side: HTTPRoute's CRD is too large for client-side apply
        kubectl("apply", "--server-side", "-f", str(f))
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(istio_crds(ISTIO_CRDS)))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gateways.gateway.networking.k8s.io",
        "crd/gatewayclasses.gateway.networking.k8s.io",
        *(f"crd/{c}" for c in ISTIO_CRDS),
    )

    def discoverable() -> bool:
        istio = kubectl("api-resources", "--api-group=networking.istio.io", check=False).stdout
        gw = kubectl("api-resources", "--api-group=gateway.networking.k8s.io", check=False).stdout
        return "serviceentries" in istio and "gateways" in gw

    wait_until(discoverable, 60, "the CRDs to be discoverable", 0.5)


REPORT_CRDS = ("crd/policyreports.wgpolicyk8s.io", "crd/clusterpolicyreports.wgpolicyk8s.io")
OPENREPORTS_CRDS = ("crd/reports.openreports.io", "crd/clusterreports.openreports.io")
OPENREPORTS = ("reports.openreports.io", "clusterreports.openreports.io")


def install_report_crds(kubectl: Kubectl) -> None:
    """Kyverno's wgpolicyk8s.io/v1alpha2 PolicyReport CRDs (the audit writes them), then wait until discoverable."""
    _install_crd_files(kubectl, policy_report_files(), REPORT_CRDS, "wgpolicyk8s.io", "policyreports")


def install_openreports_crds(kubectl: Kubectl) -> None:
    """The openreports.io/v1alpha1 Report and ClusterReport CRDs, then wait until discoverable."""
    _install_crd_files(kubectl, openreports_files(), OPENREPORTS_CRDS, "openreports.io", "clusterreports")


def _install_crd_files(
    kubectl: Kubectl, files: tuple[Path, ...], crds: tuple[str, ...], group: str, plural: str
) -> None:
    for f in files:
        kubectl("apply", "--server-side", "-f", str(f))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    wait_until(
        lambda: plural in kubectl("api-resources", f"--api-group={group}", check=False).stdout,
        60,
        f"the {group} CRDs to be discoverable",
        0.5,
    )


def policy_reports(
    kubectl: Kubectl, kinds: tuple[str, str] = ("policyreports.wgpolicyk8s.io", "clusterpolicyreports.wgpolicyk8s.io")
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(kind, namespace, name) of the object reported on -> the audit's report, of both report kinds
    (``kinds``: the resources, the OpenReports ones with :data:`OPENREPORTS`)."""
    out = {}
    for kind in kinds:
        items = json.loads(
            kubectl("get", kind, "-A", "-l", "app.kubernetes.io/managed-by=waypoint-webhook", "-o", "json").stdout
        )["items"]
        for r in items:
            s = r["scope"]
            out[(s["kind"], s.get("namespace", ""), s["name"])] = r
    return out


@contextmanager
def running_cluster(
    workdir: Path,
    setup: Callable[[Kubectl], None] = install_crds,
    apiserver_args: list[str] | None = None,
    bin_dir: Path | None = None,
) -> Iterator[ControlPlane]:
    """kube-apiserver and etcd (from ``bin_dir``, else the current build) with ``setup`` applied;
    both are stopped however this ends, including when start-up or ``setup`` fails part way."""
    cp = (
        ControlPlane(workdir, apiserver_args=list(apiserver_args or []))
        if bin_dir is None
        else ControlPlane(workdir, bin_dir=bin_dir, apiserver_args=list(apiserver_args or []))
    )
    try:
        cp.start()
        setup(Kubectl(cp.kubeconfig))
        yield cp
    finally:
        cp.stop()


@contextmanager
def running_auditor(
    cluster: ControlPlane, kubectl: Kubectl, workdir: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``waypoint-webhook auditor`` as the Deployment runs it: with the service account's own token,
    never the admin's, so RBAC is what the manifests grant. Yields the process and its log; on the
    way out sends SIGTERM and asserts a clean exit (0, no traceback)."""
    token = kubectl("create", "token", "waypoint-webhook", "-n", "waypoint-webhook", "--duration=1h").stdout.strip()
    kubeconfig = cluster.kubeconfig_for_token(token, workdir / "sa.kubeconfig")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    log = workdir / "auditor.log"
    proc = spawn([EXE, "auditor", "--kubeconfig", str(kubeconfig), *args], log.open("wb"), env=env)
    try:
        yield proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def rendered_manifests(kubectl: Kubectl, path: Path = ROOT / "manifests") -> list[dict[str, Any]]:
    out = kubectl("kustomize", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


IDENTITY_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def apply_identity(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The project's namespace, ServiceAccount and least-privilege RBAC, exactly as shipped; returns
    every rendered manifest."""
    manifests = rendered_manifests(kubectl, ROOT / "manifests" / "namespace") + rendered_manifests(kubectl)
    kubectl.apply([d for d in manifests if d["kind"] in IDENTITY_KINDS])
    return manifests


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


def probe_denial(kubectl: Kubectl, timeout: float = 60) -> None:
    """Webhook configurations take effect asynchronously: wait until a dry run is denied."""
    probe = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "probe", "namespace": "default", "labels": {"istio.io/use-waypoint": "None"}},
        "spec": {"ports": [{"port": 80}]},
    }
    wait_until(
        lambda: "InvalidUseWaypoint" in kubectl.apply(probe, "--dry-run=server", check=False).stderr,
        timeout,
        "the webhook configuration to take effect",
        0.5,
    )
