"""The probe port: ``/healthz``, ``/readyz`` and ``/metrics`` in a process of their own.

Why not in the workers: a scrape of a large cluster's metrics (hundreds of KiB, tens of ms of CPU)
would run on a thread an admission request needs, and 16 scrapers in a loop pushed review p99
from milliseconds to most of a second; kubelet's probes queued behind admission the same way,
and a liveness probe that times out restarts a healthy pod. So the gunicorn master binds the
probe port before forking (a port in use fails ``serve`` at once) and hands the socket to this
process, which it supervises like the auditor. It runs under SCHED_IDLE, serves one request per
connection from a bounded pool, cuts every connection after a deadline, and renders the
metrics at most once per ``cache_seconds`` whatever the number of scrapers.

What it reports comes from files in the run directory (``PROMETHEUS_MULTIPROC_DIR``): the
workers' metric files, the auditor's status, and one health file per worker that the worker
rewrites every second (:class:`HealthPublisher`) with the reasons it is not ready. ``/readyz`` is
200 when every live worker has reported within ``fresh_seconds`` and none has a reason.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported only with --tls-cert: it loads cryptography
    from webhook.admission.tls import CertReloader

log = logging.getLogger("webhook.probes")

HEALTH_PREFIX = "health-"
Check = Callable[[], str | None]  # why a worker is not ready, or None


def health_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{HEALTH_PREFIX}{pid}.json")


class HealthPublisher:
    """In each worker: run the readiness checks every ``interval`` seconds and replace the
    worker's health file with the result. The checks also refresh the gauges they feed (the
    certificate's expiry, the view's sync), so those are current without any probe."""

    def __init__(self, directory: str, checks: Sequence[Check], interval: float = 1.0) -> None:
        self.path = health_path(directory, os.getpid())
        self.directory, self.checks, self.interval = directory, tuple(checks), interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def publish(self) -> None:
        reasons = [r for check in self.checks if (r := check())]
        record = {"pid": os.getpid(), "updated": time.time(), "reasons": reasons}
        try:
            fd, tmp = tempfile.mkstemp(prefix=".health-", dir=self.directory)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot write %s: %s", self.path, e)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.publish()
            except Exception:  # a check that raises must not end the heartbeat
                log.exception("readiness check failed")
            self.stopped.wait(self.interval)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    workers: int
    reasons: tuple[str, ...]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def readiness(directory: str, fresh_seconds: float, now: float | None = None) -> Readiness:
    """Ready when at least one worker reported, every live worker reported within
    ``fresh_seconds``, and none has a reason. Files of dead workers are ignored."""
    now = time.time() if now is None else now
    workers, reasons = 0, []
    for path in sorted(Path(directory).glob(f"{HEALTH_PREFIX}*.json")):
        try:
            record = json.loads(path.read_bytes())
            pid, updated, why = int(record["pid"]), float(record["updated"]), list(record["reasons"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # torn or foreign: the next heartbeat replaces it
        if not _alive(pid):
            continue
        workers += 1
        if now - updated > fresh_seconds:
            reasons.append(f"worker {pid} has not reported for {now - updated:.0f}s")
        reasons += [f"worker {pid}: {r}" for r in why if isinstance(r, str)]
    if workers == 0:
        reasons.append("no worker has started yet")
    return Readiness(not reasons, workers, tuple(dict.fromkeys(reasons)))


@dataclass
class MetricsCache:
    """The exposition rendered at most once per ``ttl`` seconds; concurrent scrapes of an expired
    copy wait for one rendering instead of each doing it. The gzip form is made once per copy."""

    render: Callable[[], bytes]
    ttl: float
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _at: float = float("-inf")
    _plain: bytes = b""
    _gzip: bytes | None = None

    def get(self, gzipped: bool) -> bytes:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._plain, self._gzip = self.render(), None
                self._at = time.monotonic()
            if not gzipped:
                return self._plain
            if self._gzip is None:
                self._gzip = gzip.compress(self._plain, compresslevel=1)
            return self._gzip


@dataclass
class TokenBucket:
    """At most ``rate`` answers a second after a burst of ``burst``: what ``/metrics`` may cost
    the pod in bytes sent is bounded whatever the scrapers do. Prometheus scrapes every 15 s or
    more per replica; a loop gets 429 with Retry-After instead of 565 KiB."""

    rate: float
    burst: float
    _tokens: float = -1.0
    _at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._tokens < 0:
                self._tokens, self._at = self.burst, now
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass(frozen=True)
class ProbeOptions:
    directory: str
    audit_status: str | None = None
    cache_seconds: float = 1.0
    fresh_seconds: float = 5.0
    threads: int = 4
    deadline: float = 5.0  # a whole connection: request read and answer written
    niceness: int = 19  # when SCHED_IDLE is not available
    scrape_rate: float = 10.0  # /metrics answers a second, after a burst of scrape_burst
    scrape_burst: float = 20.0
    # --probe-tls: the serving certificate, reloaded as the workers reload it (kubelet's HTTPS
    # probes do not verify it; Prometheus does, with the CA of the shipped Secret).
    tls_cert: str | None = None
    tls_key: str | None = None


class ProbeHandler(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0 framing: the answer ends the connection), so a
    scraper's idle keep-alive connection never holds a thread."""

    server: ProbeServer
    server_version = "waypoint-webhook-probes"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: bytes, ctype: str, gzipped: bool = False, retry: int = 0) -> None:
        self.send_response(status)
        if retry:
            self.send_header("Retry-After", str(retry))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any], retry: int = 0) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json", retry=retry)

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/readyz":
            r = readiness(self.server.opts.directory, self.server.opts.fresh_seconds)
            body = {"status": "ready" if r.ready else "not ready", "workers": r.workers}
            self._json(200 if r.ready else 503, body if r.ready else {**body, "reasons": list(r.reasons)})
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": "the probe port serves /healthz, /readyz and /metrics only"})

    do_HEAD = do_GET

    def _metrics(self) -> None:
        if not self.server.scrapes.take():
            rate = self.server.opts.scrape_rate
            self._json(429, {"error": f"too many scrapes: /metrics answers at most {rate:g} a second"}, 1)
            return
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        self._send(200, self.server.metrics.get(gzipped), self.server.content_type, gzipped)

    def _refuse(self) -> None:
        self._json(405, {"error": "the probe port answers GET and HEAD only"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


class ProbeServer(HTTPServer):
    """An HTTP server on an inherited, already listening socket, with a bounded thread pool and a
    deadline per connection (a client that sends a byte every few seconds is cut off)."""

    request_queue_size = 64

    def __init__(self, sock: socket.socket, opts: ProbeOptions, metrics: MetricsCache, content_type: str) -> None:
        super().__init__(sock.getsockname()[:2], ProbeHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.opts, self.metrics, self.content_type = opts, metrics, content_type
        self.slots = threading.BoundedSemaphore(opts.threads)
        self.scrapes = TokenBucket(opts.scrape_rate, opts.scrape_burst)
        self.open: dict[socket.socket, float] = {}
        self.open_lock = threading.Lock()
        self.tls = _reloader(opts)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()  # past the pool, connections wait in the listen backlog
        with self.open_lock:
            self.open[request] = time.monotonic() + self.opts.deadline
        request.settimeout(self.opts.deadline)
        threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True).start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        conn = request
        try:
            if self.tls is not None:
                conn = self._wrap(request)
                conn.do_handshake()  # within the same deadline: the reaper cuts a stalled handshake
            self.finish_request(conn, client_address)
        except Exception:  # a client gone mid-answer, or a failed handshake: nothing to tell it
            log.debug("probe connection from %s failed", client_address, exc_info=True)
        finally:
            with self.open_lock:
                self.open.pop(conn, None)
            self.shutdown_request(conn)
            self.slots.release()

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket:
        """The connection as TLS (the serving certificate of now), tracked in place of ``raw``."""
        assert self.tls is not None
        conn = self.tls.context().wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self.open_lock:
            self.open[conn] = self.open.pop(raw, time.monotonic() + self.opts.deadline)
        return conn

    def reap(self) -> None:
        """Cut connections past their deadline (called twice a second)."""
        now = time.monotonic()
        with self.open_lock:
            late = [s for s, deadline in self.open.items() if deadline < now]
        for s in late:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _reloader(opts: ProbeOptions) -> CertReloader | None:
    if not (opts.tls_cert and opts.tls_key):
        return None
    from webhook.admission.tls import CertReloader

    reloader = CertReloader(opts.tls_cert, opts.tls_key)
    if reloader.error:
        log.error("probe port: %s (TLS connections fail until a valid pair is there)", reloader.error)
    return reloader


def _metrics_renderer(opts: ProbeOptions) -> tuple[Callable[[], bytes], str]:
    from webhook.admission.metrics import CONTENT_TYPE, render_exposition

    return (lambda: render_exposition(opts.directory, opts.audit_status)), CONTENT_TYPE


def yield_cpu(niceness: int) -> str:
    """Admission first: run under SCHED_IDLE, which any waking worker preempts at once (a nice
    value only shares the CPU, and a worker that waits for the end of this process's slice adds
    milliseconds to a review's tail). It still gets a sliver of a saturated CPU, enough for a
    probe within its timeout. Where SCHED_IDLE is not available, the highest nice we may take."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(niceness)
        return f"nice {niceness}"


def serve(sock: socket.socket, opts: ProbeOptions, exit_with_parent: bool = True) -> int:
    """Serve until SIGTERM, or until the gunicorn master (the parent) is gone."""
    policy = yield_cpu(opts.niceness)
    scheme = "https" if opts.tls_cert else "http"
    log.info(
        "probe port serving /healthz, /readyz and /metrics (%s) on %s (%s)", scheme, sock.getsockname()[:2], policy
    )
    render, ctype = _metrics_renderer(opts)
    server = ProbeServer(sock, opts, MetricsCache(render, opts.cache_seconds), ctype)
    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        server.reap()
        if exit_with_parent and os.getppid() != parent:
            break
    server.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="waypoint-webhook-probes", description="the probe port (started by serve)")
    p.add_argument("--fd", type=int, required=True, help="the listening socket, inherited from serve")
    p.add_argument("--dir", required=True, help="the run directory (PROMETHEUS_MULTIPROC_DIR)")
    p.add_argument("--audit-status", help="the auditor's status file")
    p.add_argument("--cache-seconds", type=float, default=1.0)
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", default="text")
    p.add_argument("--tls-cert", help="serve TLS with this certificate (--probe-tls)")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    from webhook.admission import logs

    logs.setup(args.log_level, args.log_format)
    sock = socket.socket(fileno=args.fd)
    opts = ProbeOptions(args.dir, args.audit_status, args.cache_seconds, tls_cert=args.tls_cert, tls_key=args.tls_key)
    return serve(sock, opts)


if __name__ == "__main__":
    raise SystemExit(main())
