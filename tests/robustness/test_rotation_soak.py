"""Certificate rotation under load, and a short soak: the real server (2 workers) keeps answering
every review across rotations (new and reused connections), refuses an expired pair without a
blip, and its workers' memory stays flat under sustained load."""

from __future__ import annotations

import socket
import ssl
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from testkit.builders import consumer, review_body
from tests.server.running import ROOT, Server, start_server, stop_server
from webhook.admission import tls

pytestmark = pytest.mark.server
RELOAD_PERIOD = 2.0  # the certificate reloader looks every 2 s
BODY = review_body(consumer("Service", "s", labels={"istio.io/use-waypoint": "None"}), uid="load")


def _load(srv: Server, stop: threading.Event, reuse: bool, failures: list[str], done: list[int]) -> None:
    session = requests.Session() if reuse else None
    while not stop.is_set():
        try:
            post = session.post if session else requests.post
            r = post(
                srv.url + "/validate",
                data=BODY,
                headers={"Content-Type": "application/json"},
                verify=srv.ca,
                timeout=10,
            )
            if r.status_code != 200 or r.json()["response"]["allowed"] is not False:
                failures.append(f"{r.status_code} {r.text[:100]}")
            done.append(1)
        except Exception as e:
            failures.append(f"{type(e).__name__}: {e}")


def _serial(srv: Server) -> int:
    ctx = ssl.create_default_context(cafile=srv.ca)
    with ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1]))), server_hostname="127.0.0.1"
    ) as s:
        der = s.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der or b"").serial_number


def _rotate(srv: Server, days: int = 365) -> tls.Issued:
    ca = ((srv.certs / "ca.crt").read_bytes(), (srv.certs / "ca.key").read_bytes())
    issued = tls.issue(["localhost"], ["127.0.0.1"], days=days, ca_pair=ca)
    tls.write(issued, srv.certs)
    return issued


def _with_ca_key(srv: Server) -> None:
    """start_server's `certs` keeps no CA key: switch to a CA whose key the test holds, before
    any load (a new CA is not a rotation clients survive), and wait until it is served."""
    tls.write(tls.issue(["localhost"], ["127.0.0.1"]), srv.certs, with_ca_key=True)
    written = time.monotonic()
    deadline, streak = written + 15, 0
    # Every worker (each reloads on its own) serves the new pair. 20 answers in a row are not
    # enough alone: new connections may all land on the worker that reloaded first, so the streak
    # must also outlast one look of every reloader (2 s) after the write.
    while streak < 20 or time.monotonic() - written < RELOAD_PERIOD + 1:
        try:
            requests.get(srv.url + "/healthz", verify=srv.ca, timeout=2)
            streak += 1
        except requests.exceptions.SSLError:
            assert time.monotonic() < deadline, "the new pair was never served by every worker"
            streak = 0
            time.sleep(0.2)


def test_rotations_under_load_fail_no_request(tmp_path: Path) -> None:
    srv = start_server(tmp_path, ROOT / "examples" / "state")
    try:
        _with_ca_key(srv)
        stop, failures, done = threading.Event(), list[str](), list[float]()
        clients = [
            threading.Thread(target=_load, args=(srv, stop, reuse, failures, done))
            for reuse in (True, True, False, False)
        ]
        for c in clients:
            c.start()
        serials = []
        for _ in range(4):
            time.sleep(2.5)  # the reloader looks every 2 s
            issued = _rotate(srv)
            serials.append(issued)
        time.sleep(2.5)
        stop.set()
        for c in clients:
            c.join(15)
        from cryptography import x509

        assert _serial(srv) == x509.load_pem_x509_certificate(serials[-1].cert_pem).serial_number
        print(f"rotation: 4 rotations under load, {len(done)} reviews, {len(failures)} failed")
        assert not failures, failures[:5]
        assert len(done) > 200, len(done)
    finally:
        stop_server(srv)


def test_rotation_to_an_expired_pair_keeps_serving_and_is_exposed(tmp_path: Path) -> None:
    srv = start_server(tmp_path, ROOT / "examples" / "state")
    try:
        _with_ca_key(srv)
        before = _serial(srv)
        _rotate(srv, days=0)  # `certs --days 0`: expired at once
        time.sleep(2.5)
        assert requests.get(srv.url + "/readyz", verify=srv.ca, timeout=5).status_code == 200
        assert _serial(srv) == before
        metrics = srv.metrics()
        assert "waypoint_webhook_certificate_rejected 1.0" in metrics
        assert "refusing" in srv.log.read_text() and "expired" in srv.log.read_text()
    finally:
        stop_server(srv)


def _worker_rss_kib(srv: Server) -> int:
    kids = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
    total = 0
    for pid in kids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_short_soak_memory_stays_flat(tmp_path: Path) -> None:
    srv = start_server(tmp_path, ROOT / "examples" / "state")
    try:
        stop, failures, done = threading.Event(), list[str](), list[float]()
        clients = [
            threading.Thread(target=_load, args=(srv, stop, reuse, failures, done)) for reuse in (True, True, False)
        ]
        for c in clients:
            c.start()
        samples = []
        for _ in range(10):
            time.sleep(2)
            samples.append(_worker_rss_kib(srv))
        stop.set()
        for c in clients:
            c.join(15)
        assert not failures, failures[:5]
        warm = statistics.median(samples[2:5])
        drift = samples[-1] - warm
        print(f"soak: {len(done)} reviews in 20s, worker RSS {warm / 1024:.1f} -> {samples[-1] / 1024:.1f} MiB")
        assert drift < 5 * 1024, f"worker RSS grew by {drift} KiB over the soak: {samples}"
    finally:
        stop_server(srv)
