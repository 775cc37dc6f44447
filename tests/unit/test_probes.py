"""The probe process's pieces (webhook.admission.probes, issue 18 item 4): readiness from the
workers' health files, the metrics cache, and a server whose pool and deadline no client can hold."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from webhook.admission.probes import (
    HealthPublisher,
    MetricsCache,
    ProbeOptions,
    ProbeServer,
    TokenBucket,
    health_path,
    readiness,
)


def _health(directory: Path, pid: int, age: float, reasons: list[str]) -> None:
    record = {"pid": pid, "updated": time.time() - age, "reasons": reasons}
    Path(health_path(str(directory), pid)).write_text(json.dumps(record))


def test_ready_only_when_every_live_worker_reported_fresh_and_without_reasons(tmp_path: Path) -> None:
    assert readiness(str(tmp_path), 5).reasons == ("no worker has started yet",)
    _health(tmp_path, os.getpid(), 0.1, [])
    assert readiness(str(tmp_path), 5).ready
    _health(tmp_path, os.getppid(), 0.1, ["cluster view not synced yet"])
    r = readiness(str(tmp_path), 5)
    assert not r.ready and r.workers == 2 and r.reasons == (f"worker {os.getppid()}: cluster view not synced yet",)
    _health(tmp_path, os.getppid(), 30, [])  # stuck: it stopped reporting
    assert readiness(str(tmp_path), 5).reasons[0].startswith(f"worker {os.getppid()} has not reported for 30")


def test_files_of_dead_workers_and_torn_files_are_ignored(tmp_path: Path) -> None:
    _health(tmp_path, os.getpid(), 0.1, [])
    _health(tmp_path, 2**22 + 12345, 0.1, ["never synced"])  # no such process
    Path(health_path(str(tmp_path), 7)).write_text('{"pid": 7, "upd')
    r = readiness(str(tmp_path), 5)
    assert r.ready and r.workers == 1


def test_the_publisher_writes_the_checks_result_and_keeps_going_when_one_raises(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "certificate rejected"

    pub = HealthPublisher(str(tmp_path), [flaky], interval=0.05)
    pub.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not Path(pub.path).exists():
        time.sleep(0.02)
    pub.stopped.set()
    record = json.loads(Path(pub.path).read_text())
    assert record["pid"] == os.getpid() and record["reasons"] == ["certificate rejected"]


def test_the_cache_renders_once_per_ttl_for_any_number_of_scrapers() -> None:
    renders: list[float] = []

    def render() -> bytes:
        renders.append(time.monotonic())
        time.sleep(0.05)  # a slow rendering: concurrent scrapes must wait for this one
        return b"metric 1\n" * 1000

    cache = MetricsCache(render, ttl=10)
    threads = [threading.Thread(target=cache.get, args=(i % 2 == 0,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(renders) == 1
    assert gzip.decompress(cache.get(True)) == cache.get(False)
    expiring = MetricsCache(render, ttl=0)
    expiring.get(False)
    expiring.get(False)
    assert len(renders) == 3


@pytest.fixture
def probe_server(tmp_path: Path) -> Iterator[tuple[ProbeServer, str]]:
    sock = socket.create_server(("127.0.0.1", 0))
    opts = ProbeOptions(str(tmp_path), threads=2, deadline=1.0)
    server = ProbeServer(sock, opts, MetricsCache(lambda: b"waypoint_webhook_x 1\n", 1.0), "text/plain")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    reaper = threading.Event()

    def reap() -> None:
        while not reaper.wait(0.1):
            server.reap()

    threading.Thread(target=reap, daemon=True).start()
    yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    reaper.set()
    server.shutdown()
    server.server_close()


def test_the_probe_paths_answer_and_nothing_else(probe_server: tuple[ProbeServer, str], tmp_path: Path) -> None:
    _, base = probe_server
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(base + "/readyz", timeout=5).status_code == 503
    _health(tmp_path, os.getpid(), 0, [])
    assert requests.get(base + "/readyz", timeout=5).json() == {"status": "ready", "workers": 1}
    m = requests.get(base + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert m.headers["Content-Encoding"] == "gzip" and m.text == "waypoint_webhook_x 1\n"
    assert requests.get(base + "/validate", timeout=5).status_code == 404
    assert requests.post(base + "/metrics", data=b"x", timeout=5).status_code == 405


def test_silent_clients_are_cut_off_and_never_hold_the_pool(probe_server: tuple[ProbeServer, str]) -> None:
    """Two threads, four clients that send half a request line and stop: each is cut at the
    1 s deadline, and a real probe behind them is answered."""
    _, base = probe_server
    port = int(base.rsplit(":", 1)[1])
    silent = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /hea")
        silent.append(s)
    started = time.monotonic()
    assert requests.get(base + "/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 5
    for s in silent:
        s.settimeout(5)
        assert s.recv(100) == b""  # closed by the server
        s.close()


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert sum(bucket.take(now=100.0) for _ in range(30)) == 20
    assert sum(bucket.take(now=101.0) for _ in range(30)) == 10  # one second refills ten
    assert bucket.take(now=1000.0) and sum(bucket.take(now=1000.0) for _ in range(30)) == 19  # never above the burst


def test_a_scrape_loop_gets_429_with_retry_after(probe_server: tuple[ProbeServer, str]) -> None:
    _, base = probe_server
    codes = [requests.get(base + "/metrics", timeout=5) for _ in range(40)]
    assert {r.status_code for r in codes} == {200, 429}
    refused = next(r for r in codes if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1" and "at most 10 a second" in refused.json()["error"]
    assert requests.get(base + "/healthz", timeout=5).status_code == 200  # probes are never rate limited
