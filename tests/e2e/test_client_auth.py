"""Optional client authentication: the webhook started with --client-ca accepts only clients
presenting a certificate signed by it. kube-apiserver presents one through its
AdmissionConfiguration (WebhookAdmission kubeConfigFile), so admissions work; anyone else is
refused at the TLS handshake."""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from testkit.controlplane import ControlPlane, dn, free_port, key_pem, make_cert, pem
from testkit.harness import Kubectl, apply_identity, probe_denial, running_cluster, webhook_configs
from testkit.webhook_process import Webhook, start_webhook

pytestmark = pytest.mark.e2e


def _client_pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA for webhook clients, and the API server's client certificate signed by it."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(dn("webhook-clients"), ca_key, dn("webhook-clients"), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(dn("kube-apiserver"), key, ca.subject, ca_key, False, [ExtendedKeyUsageOID.CLIENT_AUTH])
    for name, data in (("ca.crt", pem(ca)), ("client.crt", pem(cert)), ("client.key", key_pem(key))):
        (d / name).write_bytes(data)
    return d / "ca.crt", d / "client.crt", d / "client.key"


def _admission_config(d: Path, cert: Path, key: Path) -> Path:

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    kubeconfig = d / "webhook-clients.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                # "*" matches every webhook host; a real install can name waypoint-webhook.<ns>.svc:443
                "users": [{"name": "*", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
            }
        )
    )
    webhook_admission = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    config = d / "admission.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {"name": n, "configuration": webhook_admission}
                    for n in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
                ],
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Kubectl, Webhook]]:
    work = tmp_path_factory.mktemp("mtls")
    ca, cert, key = _client_pki(work / "clients")
    config = _admission_config(work, cert, key)
    with running_cluster(work / "cp", apiserver_args=[f"--admission-control-config-file={config}"]) as cp:
        kubectl = Kubectl(cp.kubeconfig)
        apply_identity(kubectl)
        wh = start_webhook(cp, kubectl, work / "webhook", ["--client-ca", str(ca)], probe_port=free_port())
        try:
            kubectl.apply(webhook_configs(kubectl, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
            probe_denial(kubectl)
            yield cp, kubectl, wh
        finally:
            wh.stop(15)


def test_the_api_server_admits_through_its_client_certificate(mtls: tuple[ControlPlane, Kubectl, Webhook]) -> None:
    _, kubectl, _ = mtls
    kubectl("create", "namespace", "mtls")
    denied = kubectl("label", "namespace", "mtls", "istio.io/use-waypoint=None", check=False)
    assert denied.returncode != 0 and "InvalidUseWaypoint" in denied.stderr, denied.stderr
    ok = kubectl("label", "namespace", "mtls", "istio.io/dataplane-mode=ambient", check=False)
    assert ok.returncode == 0, ok.stderr


def test_a_client_without_a_certificate_is_refused_at_the_handshake(
    mtls: tuple[ControlPlane, Kubectl, Webhook],
) -> None:
    _, _, wh = mtls
    port = int(wh.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(wh.ca))

    def talk() -> bytes:
        with ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
        ) as s:
            # TLS 1.3 completes the client side first; the server's refusal arrives with the first read
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(100)

    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        answer = talk()
        raise AssertionError(f"a client without a certificate got {answer!r}")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(wh.url + "/healthz", verify=str(wh.ca), timeout=10)


def test_probes_answer_on_the_probe_port_and_reviews_do_not(mtls: tuple[ControlPlane, Kubectl, Webhook]) -> None:
    """kubelet and Prometheus present no client certificate: --probe-port serves them over plain
    HTTP, and nothing else."""
    _, _, wh = mtls
    base = wh.probe
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
    assert requests.get(base + "/readyz", timeout=5).status_code == 200
    assert "waypoint_webhook_connections_closed_total" in requests.get(base + "/metrics", timeout=5).text
    r = requests.post(base + "/validate", data=b"{}", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 405
    assert requests.get(base + "/validate", timeout=5).status_code == 404
