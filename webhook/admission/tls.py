"""Certificates: generation for development and ``make certs``, and hot reload for serving.

:class:`CertReloader` hands gunicorn an ``ssl.SSLContext`` for every new connection and
rebuilds it when the certificate or key file changes (checked at most once per interval), so
cert-manager or a Secret update rotates the serving certificate with no restart. A pair that
fails to load keeps the previous context, and readiness reports it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import os
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issued:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca_key_pem: bytes

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode("ascii")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def issue(
    dns_names: list[str],
    ips: list[str],
    days: int = 365,
    ca_days: int = 3650,
    ca_pair: tuple[bytes, bytes] | None = None,
) -> Issued:
    """A serving certificate (ECDSA P-256, SHA-256, SAN-only names) and the CA that signed it.

    ``ca_pair`` (PEM cert, PEM key) reuses an existing CA, so rotating the serving certificate
    leaves every caBundle valid (a caBundle that no longer matches the serving CA is among the most
    common webhook outages).
    """
    now = dt.datetime.now(dt.UTC)
    if ca_pair is not None:
        ca = x509.load_pem_x509_certificate(ca_pair[0])
        loaded = serialization.load_pem_private_key(ca_pair[1], password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key must be an ECDSA key")
        ca_key = loaded
        return _leaf(ca, ca_key, dns_names, ips, days, now)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "waypoint-webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _leaf(ca, ca_key, dns_names, ips, days, now)


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: list[str],
    ips: list[str],
    days: int,
    now: dt.datetime,
) -> Issued:
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if not sans:
        raise ValueError("a serving certificate needs at least one --dns or --ip name")
    cert = (
        x509.CertificateBuilder()
        # Empty subject: hostnames live in the SAN only, which is all Go's TLS checks.
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Issued(ca.public_bytes(pem), cert.public_bytes(pem), _pem_key(key), _pem_key(ca_key))


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file created exclusively (random name, ``mode`` from the start),
    then rename it over ``path``: readers see the old or the new content, never half of it, and a
    stale temporary file left by someone else can never lend its permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Key material: readable by its owner only (0600)."""
    _write_atomic(path, data, 0o600)


def write(issued: Issued, out: Path, *, with_ca_key: bool = False) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"ca": out / "ca.crt", "cert": out / "tls.crt", "key": out / "tls.key"}
    _write_atomic(paths["ca"], issued.ca_pem, 0o644)
    # Key before certificate: a reloader that sees the new certificate also finds its key.
    write_private(paths["key"], issued.key_pem)
    _write_atomic(paths["cert"], issued.cert_pem, 0o644)
    if with_ca_key:
        paths["ca_key"] = out / "ca.key"
        write_private(paths["ca_key"], issued.ca_key_pem)
    return paths


EXPIRY_WARNING = 30 * 86400  # seconds before notAfter from which the log says to renew
EXPIRY_WARNING_EVERY = 86400.0  # once a day per process, not once per connection


class CertReloader:
    """Serves the newest *valid* certificate pair to every new TLS connection.

    A new pair on disk is taken only if it loads, its key matches, and it is valid now (not
    expired, not yet valid); otherwise the previous pair keeps serving, the refusal is logged once
    per change on disk and exposed (``rejected``), so a bad rotation never takes the webhook down.
    With ``client_ca``, clients must present a certificate signed by it (the API server can,
    through its AdmissionConfiguration); that file is reloaded with the pair.
    """

    def __init__(self, cert: str, key: str, interval: float = 2.0, client_ca: str | None = None) -> None:
        self.cert, self.key, self.interval, self.client_ca = cert, key, interval, client_ca
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._sig: tuple[int, ...] | None = None
        self._refused: tuple[int, ...] | None = None
        self._checked = 0.0
        self.expiry: float = 0.0
        self.error: str | None = None
        self.rejected = False  # the files on disk were refused; an older pair is serving
        self.loads = 0
        self._warned = -EXPIRY_WARNING_EVERY  # monotonic time of the last "expires soon" warning
        self._load()

    def _signature(self) -> tuple[int, ...]:
        paths = [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]
        return tuple(v for p in paths for st in [os.stat(p)] for v in (st.st_mtime_ns, st.st_size, st.st_ino))

    def _build(self) -> tuple[ssl.SSLContext, float]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)  # raises if the key does not match
        if self.client_ca:
            ctx.load_verify_locations(cafile=self.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        leaf = x509.load_pem_x509_certificate(Path(self.cert).read_bytes())
        now = dt.datetime.now(dt.UTC)
        if leaf.not_valid_after_utc <= now:
            raise ValueError(f"certificate expired at {leaf.not_valid_after_utc.isoformat()}")
        if leaf.not_valid_before_utc > now:
            raise ValueError(f"certificate not valid before {leaf.not_valid_before_utc.isoformat()}")
        return ctx, leaf.not_valid_after_utc.timestamp()

    def _load(self) -> None:
        try:
            sig = self._signature()
        except OSError as e:
            self.error = f"cannot read {self.cert} / {self.key}: {e}"
            return
        if sig == self._refused:
            return  # already refused and logged; wait for the next change
        try:
            ctx, expiry = self._build()
        except (OSError, ssl.SSLError, ValueError) as e:
            self.error = f"refusing {self.cert} / {self.key}: {e}"
            self._refused = sig
            self.rejected = self._ctx is not None
            if self._ctx is not None:  # at start-up there is nothing to keep: the caller reports it
                log.error("keeping the previous serving certificate: %s", self.error)
            return
        self._ctx, self._sig, self.expiry, self.error = ctx, sig, expiry, None
        self._refused, self.rejected = None, False
        self.loads += 1
        log.info(
            "serving certificate loaded from %s (expires %s)%s",
            self.cert,
            dt.datetime.fromtimestamp(expiry, dt.UTC).isoformat(),
            f"; client certificates required (CA {self.client_ca})" if self.client_ca else "",
        )

    def context(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked >= self.interval:
            with self._lock:
                if now - self._checked >= self.interval:
                    self._checked = now
                    try:
                        changed = self._signature() != self._sig
                    except OSError as e:
                        changed, self.error = False, f"cannot stat certificate files: {e}"
                    if changed:
                        self._load()
                    self._warn_if_expiring(now)
        if self._ctx is None:
            raise ssl.SSLError(self.error or "no serving certificate loaded")
        return self._ctx

    def _warn_if_expiring(self, now: float) -> None:
        """The metric says when the pair ends; the log says it too, while there is time to renew."""
        left = self.expiry - time.time()
        if self._ctx is None or left > EXPIRY_WARNING or now - self._warned < EXPIRY_WARNING_EVERY:
            return
        self._warned = now
        log.warning(
            "serving certificate %s expires in %.0f days: renew it (make renew-certs; helm upgrade --reuse-values "
            "--set certificates.generate.rotate=true; or check cert-manager)",
            self.cert,
            max(left, 0) / 86400,
        )

    @property
    def ready(self) -> bool:
        """A valid, unexpired pair is loaded (readiness gates on it)."""
        return self._ctx is not None and self.expiry > time.time()
