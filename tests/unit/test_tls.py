"""Certificate files: reload refuses a pair that cannot serve, keeps the previous one and says so
once; key material is private from creation, whatever stale files lie around."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.admission import tls
from webhook.admission.tls import CertReloader


def _write(d: Path, issued: tls.Issued) -> None:
    tls.write(issued, d)
    future = time.time() + 10  # a new mtime even within the filesystem's timestamp granularity
    os.utime(d / "tls.crt", (future, future))


def _not_yet_valid(d: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ca")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now + dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    future = time.time() + 20
    os.utime(d / "tls.crt", (future, future))


def _mismatched(d: Path) -> None:
    a, b = tls.issue(["localhost"], []), tls.issue(["localhost"], [])
    (d / "tls.crt").write_bytes(a.cert_pem)
    (d / "tls.key").write_bytes(b.key_pem)
    future = time.time() + 30
    os.utime(d / "tls.crt", (future, future))


@pytest.mark.parametrize(
    ("case", "make", "says"),
    [
        ("expired", lambda d: _write(d, tls.issue(["localhost"], [], days=0)), "expired"),
        ("not yet valid", _not_yet_valid, "not valid before"),
        ("key does not match", _mismatched, "refusing"),
    ],
)
def test_rotation_to_an_unusable_pair_keeps_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, make: Callable[[Path], object], says: str
) -> None:
    _write(tmp_path, tls.issue(["localhost"], []))
    r = CertReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), interval=0)
    good = r.context()
    assert r.ready and not r.rejected
    make(tmp_path)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert r.context() is good  # still serving the previous pair
    assert r.rejected and r.ready and says in (r.error or ""), r.error
    assert len([rec for rec in caplog.records if rec.levelno >= logging.ERROR]) == 1, "logged once per change"
    _write(tmp_path, tls.issue(["localhost"], []))  # a good pair again is taken at once
    assert r.context() is not good and not r.rejected


def test_an_unusable_pair_at_start_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, tls.issue(["localhost"], [], days=0))
    r = CertReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    assert not r.ready and "expired" in (r.error or "")


def test_key_material_is_private_even_over_a_stale_temporary_file(tmp_path: Path) -> None:
    for stale in (".tls.key.tmp", ".ca.key.tmp"):
        (tmp_path / stale).write_text("stale")
        os.chmod(tmp_path / stale, 0o644)
    tls.write(tls.issue(["localhost"], []), tmp_path, with_ca_key=True)
    for name in ("tls.key", "ca.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "tls.crt").stat().st_mode) == 0o644


def test_a_pair_close_to_expiry_is_logged_once_a_day(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 19 item 6: the self-managed certificate warns before it expires (the metric
    waypoint_webhook_certificate_expiry_timestamp_seconds says when)."""
    _write(tmp_path, tls.issue(["localhost"], [], days=10))
    r = CertReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), interval=0)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            r.context()
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expires in 10 days" in warnings[0] and "make renew-certs" in warnings[0]


def test_a_fresh_pair_is_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, tls.issue(["localhost"], [], days=365))
    r = CertReloader(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), interval=0)
    with caplog.at_level(logging.WARNING):
        r.context()
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
