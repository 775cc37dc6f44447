"""Hostile clients against the real server (gunicorn over TLS, one worker with two threads, short
deadlines): none of them delays real reviews, and each is cut off when its phase's deadline
passes. The benchmark (bench/hostile.py) measures the same with 200 connections at once."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testkit.builders import consumer, review_body
from tests.server.running import ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.server

HANDSHAKE, HEADER, BODY, KEEPALIVE = 1.0, 2.0, 2.0, 3
SLACK = 1.5  # deadlines are enforced once per turn of the event loop (at most a second apart)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("hostile"),
        ROOT / "examples" / "state",
        workers=1,
        extra=[
            "--threads",
            "2",
            "--handshake-timeout",
            str(HANDSHAKE),
            "--header-timeout",
            str(HEADER),
            "--body-timeout",
            str(BODY),
            "--keepalive",
            str(KEEPALIVE),
        ],
    )
    yield srv
    stop_server(srv)


def _denied(uid: str) -> bytes:
    return review_body(consumer("Service", labels={"istio.io/use-waypoint": "None"}), uid=uid)


def _port(srv: Server) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def _raw(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(srv)), timeout=30)


def _tls(srv: Server) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=srv.ca)
    return ctx.wrap_socket(_raw(srv), server_hostname="127.0.0.1")


def _real_reviews(srv: Server, n: int = 5) -> float:
    """n real reviews on new connections; returns the slowest, in seconds."""
    worst = 0.0
    for i in range(n):
        t = time.monotonic()
        r = srv.post("/validate", _denied(f"real-{i}"))
        assert r.status_code == 200 and r.json()["response"]["allowed"] is False
        worst = max(worst, time.monotonic() - t)
    return worst


def _closed_by_server(s: socket.socket, within: float) -> float:
    """Seconds until the server closes ``s`` (EOF or reset); fails if it stays open ``within``."""
    t = time.monotonic()
    s.settimeout(within)
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        if isinstance(e, TimeoutError | socket.timeout):
            raise AssertionError(f"still open after {within:.1f}s") from None
    return time.monotonic() - t


@contextmanager
def _held(make: Callable[[], socket.socket], count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections from ``make``, open for the block and closed after it."""
    socks = [make() for _ in range(count)]
    try:
        yield socks
    finally:
        for s in socks:
            s.close()


def _served_while_held_then_cut(srv: Server, make: Callable[[], socket.socket], count: int, deadline: float) -> None:
    """Real reviews keep their pace while the connections are held; the server cuts them at ``deadline``."""
    with _held(make, count) as socks:
        assert _real_reviews(srv) < 1.0
        assert _closed_by_server(socks[-1], deadline + SLACK + 1) <= deadline + SLACK


def test_truncated_client_hellos_do_not_block_and_are_cut_at_the_handshake_deadline(server: Server) -> None:
    def hello() -> socket.socket:
        s = _raw(server)
        s.sendall(b"\x16")  # the first byte of a TLS record, then nothing
        return s

    _served_while_held_then_cut(server, hello, 8, HANDSHAKE)  # four times the threads


def test_idle_tcp_is_cut_at_the_handshake_deadline(server: Server) -> None:
    _served_while_held_then_cut(server, lambda: _raw(server), 8, HANDSHAKE)


def test_idle_tls_waits_on_the_loop_until_the_keepalive_timeout(server: Server) -> None:
    _served_while_held_then_cut(server, lambda: _tls(server), 8, KEEPALIVE)


def test_slowloris_headers_are_cut_at_the_header_deadline(server: Server) -> None:
    def slow() -> socket.socket:
        s = _tls(server)
        s.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
        return s

    with _held(slow, 6) as socks:
        start = time.monotonic()
        while time.monotonic() - start < HEADER + SLACK + 1:
            try:
                for s in socks:
                    s.sendall(b"X")  # a byte at a time, never the end of the headers
            except OSError:
                break
            assert _real_reviews(server, 1) < 1.0
            time.sleep(0.3)
        assert time.monotonic() - start <= HEADER + SLACK + 0.5, "the slow header block was never cut off"


def test_stalled_body_is_cut_at_the_body_deadline(server: Server) -> None:
    def stalled() -> socket.socket:
        s = _tls(server)
        s.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"apiVersion"'
        )
        return s

    _served_while_held_then_cut(server, stalled, 6, BODY)


def test_announced_huge_body_gets_413_at_once_and_the_drain_is_bounded(server: Server) -> None:
    def huge() -> socket.socket:
        s = _tls(server)
        s.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        return s

    with _held(huge, 4) as socks:
        socks[0].settimeout(2)
        head = socks[0].recv(4096)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert b"connection: close" in head.lower()
        assert _real_reviews(server) < 1.0
        assert _closed_by_server(socks[-1], BODY + SLACK + 1) <= BODY + SLACK


def test_bad_chunked_framing_is_400_and_closes(server: Server) -> None:
    with _tls(server) as s:
        s.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400"), data[:300]
    assert b"500" not in data.split(b"\r\n", 1)[0]
    assert _real_reviews(server, 1) < 1.0
    assert "Traceback" not in Path(server.log).read_text()


def test_pipelined_and_split_requests_are_both_answered(server: Server) -> None:
    one, two = _denied("pipe-1"), _denied("pipe-2")

    def req(body: bytes) -> bytes:
        return (
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    wire = req(one) + req(two)
    with _tls(server) as s:
        s.sendall(wire[: len(wire) - 7])  # the second request arrives in two pieces
        time.sleep(0.3)
        s.sendall(wire[len(wire) - 7 :])
        s.settimeout(5)
        data = b""
        while not (b'"pipe-1"' in data and b'"pipe-2"' in data):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 2


HEAD = b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
HOSTILE_CHUNKED = [
    # (id, what follows the request line and Content-Type, the status answered at once)
    ("gzip, chunked and a partial chunk", b'Transfer-Encoding: gzip, chunked\r\n\r\n10\r\n{"a"', 415),
    ("identity, chunked and a partial chunk", b'Transfer-Encoding: identity, chunked\r\n\r\n10\r\n{"a"', 415),
    ("a chunk announcing more than 7 MiB", b"Transfer-Encoding: chunked\r\n\r\n800000\r\n" + b" " * 1000, 413),
    ("a 17-digit chunk size", b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n", 400),
    ("a 2 KB chunk extension", b"Transfer-Encoding: chunked\r\n\r\n10;" + b"x" * 2048, 400),
    ("two Transfer-Encoding headers", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{", 400),
]


@pytest.mark.parametrize(
    ("framing", "status"), [(h[1], h[2]) for h in HOSTILE_CHUNKED], ids=[h[0] for h in HOSTILE_CHUNKED]
)
def test_chunked_framings_that_can_never_complete_are_answered_at_once(
    server: Server, framing: bytes, status: int
) -> None:
    """Issue 18: each of these used to reach a thread that then waited for bytes that never come;
    8 such connections (the worker has 2 threads) held admission until the body deadline. Now the
    loop answers each at once and closes it, and real reviews keep their pace meanwhile."""

    def hostile() -> socket.socket:
        s = _tls(server)
        s.sendall(HEAD + framing)
        return s

    with _held(hostile, 8) as socks:
        assert _real_reviews(server) < 1.0
        socks[0].settimeout(2)
        head = socks[0].recv(4096)
        assert head.startswith(b"HTTP/1.1 %d" % status), head[:200]
        assert b"connection: close" in head.lower() and b'{"error": ' in head
        assert _closed_by_server(socks[-1], 2) < 2
