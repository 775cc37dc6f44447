"""A real kube-apiserver and etcd on loopback, envtest-style, for the end-to-end tier.

Binaries come from ``KUBEBUILDER_ASSETS`` (``make test`` sets it from ``build.sh``, which builds
them once from the Go module proxy into a cache outside the repo). Everything else is made
here per run: a PKI (serving cert, a client CA with an admin in ``system:masters``, service
account keys), etcd with ``--unsafe-no-fsync``, kube-apiserver with RBAC, and a kubeconfig.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BUILD = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "controlplane" / "build.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the process that started it dies.

    This is what makes "no process outlives the test run" hold even when pytest itself is
    killed (CI time-out, Ctrl-C twice), where no ``finally`` runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args: Sequence[str], log: IO[bytes], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a helper process (etcd, kube-apiserver, the webhook) that dies with the test run."""
    return subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def assets() -> Path:
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env and (Path(env) / "kube-apiserver").exists() and (Path(env) / "etcd").exists():
        return Path(env)
    out = subprocess.run([str(BUILD)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def oldest_assets() -> Path:
    """The oldest Kubernetes of the README's compatibility table (``build.sh oldest``)."""
    env = os.environ.get("KUBEBUILDER_ASSETS_OLDEST")
    if env and (Path(env) / "kube-apiserver").exists() and (Path(env) / "etcd").exists():
        return Path(env)
    out = subprocess.run([str(BUILD), "oldest"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def pem(obj: x509.Certificate) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    eku: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def dn(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path = field(default_factory=assets)
    etcd_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    apiserver_args: list[str] = field(default_factory=list)  # extra flags (tests, client authentication)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)  # every process ever started, for leak checks

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    # -- PKI --
    def _pki(self) -> None:
        d = self.workdir / "pki"
        d.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = make_cert(dn("e2e-ca"), ca_key, dn("e2e-ca"), ca_key, ca=True)
        srv_key = ec.generate_private_key(ec.SECP256R1())
        srv = make_cert(
            dn("kube-apiserver"),
            srv_key,
            ca.subject,
            ca_key,
            False,
            [ExtendedKeyUsageOID.SERVER_AUTH],
            [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ],
        )
        adm_key = ec.generate_private_key(ec.SECP256R1())
        adm = make_cert(
            dn("admin", "system:masters"), adm_key, ca.subject, ca_key, False, [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {
            "ca.crt": pem(ca),
            "apiserver.crt": pem(srv),
            "apiserver.key": key_pem(srv_key),
            "admin.crt": pem(adm),
            "admin.key": key_pem(adm_key),
            "sa.key": key_pem(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in files.items():
            (d / name).write_bytes(data)
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "e2e",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {"server": self.url, "certificate-authority-data": _b64(files["ca.crt"])},
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate-data": _b64(files["admin.crt"]),
                                "client-key-data": _b64(files["admin.key"]),
                            },
                        }
                    ],
                    "contexts": [
                        {"name": "e2e", "context": {"cluster": "e2e", "user": "admin", "namespace": "default"}}
                    ],
                }
            )
        )

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        ca = base64.b64encode((self.workdir / "pki" / "ca.crt").read_bytes()).decode()
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "sa",
                    "clusters": [{"name": "e2e", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
                    "users": [{"name": "sa", "user": {"token": token}}],
                    "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa"}}],
                }
            )
        )
        return path

    # -- processes --
    def start(self) -> None:
        """Start etcd then kube-apiserver; if any step fails, stop whatever already runs."""
        try:
            self._pki()
            self.start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.workdir / f"{'kube-apiserver' if name == 'apiserver' else name}.log").open("ab")
        self.procs[name] = proc = spawn(args, log)
        self.pids.append(proc.pid)

    def start_etcd(self) -> None:
        data = self.workdir / "etcd"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={data}",
                "--unsafe-no-fsync",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), 60, "etcd")

    def start_apiserver(self) -> None:
        pki = self.workdir / "pki"
        self._spawn(
            "apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-issuer=https://127.0.0.1:{self.port}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/16",  # room for the random worlds' Services
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=0",
                *self.apiserver_args,
            ],
        )
        self._wait(self.ready, 180, "kube-apiserver")

    def _stop(self, name: str, timeout: float) -> None:
        p = self.procs.pop(name, None)
        if p:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_apiserver(self) -> None:
        self._stop("apiserver", 30)

    def stop(self) -> None:
        self._stop("apiserver", 30)
        self._stop("etcd", 15)

    # -- readiness --
    def _admin_ctx(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _http_ok(self, url: str, ctx: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
                return bool(r.status == 200)
        except Exception:
            return False

    def ready(self) -> bool:
        return self._http_ok(self.url + "/readyz", self._admin_ctx())

    def _wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            for name, p in self.procs.items():
                if p.poll() is not None:
                    log = (self.workdir / f"{'kube-apiserver' if name == 'apiserver' else name}.log").read_text()
                    raise RuntimeError(f"{name} exited with {p.returncode}:\n{log[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout}s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, read from /proc (every task's children: gunicorn starts
    some from threads)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            todo += [int(k) for k in kids]
    return out
