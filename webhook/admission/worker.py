"""gunicorn's gthread worker, changed so that no client can hold a thread.

Stock gthread hands each new connection to a thread, which then blocks in the TLS handshake, in
reading the headers and in reading the body, with no deadline on any of them: four sockets that
send one byte freeze a 4-thread worker, and Go clients (kube-apiserver among them) that keep idle
connections in their pool do the same by accident (gunicorn#2917). A socket timeout would bound
each ``recv``, not the phase: a client sending a byte every few seconds would still hold the
thread for ever.

This worker keeps every connection on its event loop (non-blocking) until a whole request is
buffered: the TLS handshake, the idle time between keep-alive requests, the header block and the
body each have a deadline of their own (:class:`Deadlines`). Only then does a thread get the
connection, with the request already in the parser's buffer, so the application never waits on
the network to read. Writing the answer has a deadline too: a client that does not read is cut
off (``shutdown``) and the thread returns. Closing half-closes and drains on the loop, never in
it. Whether a request is complete is decided by :mod:`webhook.admission.framing`.

It builds on gthread's loop and internals (``TConn``, ``enqueue_req``, ``finish_request``,
``murder_*``), hence the ``gunicorn>=27,<28`` pin; the import fails loudly if they change.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn.workers import gthread

from webhook.admission import framing
from webhook.admission.wire import MAX_BODY

if not all(hasattr(gthread.ThreadWorker, m) for m in ("enqueue_req", "finish_request", "murder_pending")):
    raise ImportError("webhook.admission.worker needs gunicorn 27's gthread worker")  # pragma: no cover

# After a half-close, what the peer may still send is read and discarded on the loop, so that it
# gets to read our answer (a 413 for a body it is still sending) instead of a reset: at most this
# much, within the body deadline.
LINGER_BYTES = 2 * MAX_BODY
READ_SIZE = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Deadlines:
    """Seconds each phase of a connection may take; past it the connection is closed."""

    handshake: float = 5.0  # accept to TLS established
    header: float = 10.0  # first byte of a request to the end of its header block
    body: float = 10.0  # end of the headers to the end of the body
    response: float = 10.0  # a thread's whole turn: the application and writing its answer


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # between requests (and after the handshake): the keep-alive timeout
    HEADERS = "header"
    BODY = "body"
    LINGER = "linger"  # half-closed, draining what the peer still sends


@dataclass
class Pending:
    """A connection on the event loop, not in a thread."""

    phase: Phase
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    need: int | None = None  # total bytes of a Content-Length request, once its headers are in
    events: int = selectors.EVENT_READ
    continued: bool = False
    drained: int = 0


class PreReadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gthread with the request read on the event loop (see the module docstring)."""

    deadlines = Deadlines()  # bound per server by :func:`worker_class`
    max_body = MAX_BODY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting: dict[Any, Pending] = {}  # TConn -> state, for connections on the loop
        self.busy: dict[Any, float] = {}  # TConn -> deadline, for connections in a thread
        self.busy_lock = threading.Lock()
        self.stop_capped = False

    # -- accounting ---------------------------------------------------------------------------
    def _closed(self, reason: str) -> None:
        metrics = getattr(self.wsgi, "extensions", {}).get("waypoint-metrics") if self.wsgi else None
        if metrics is not None:
            metrics.connection_closed(reason)

    def _watch(self, conn: Any, pending: Pending) -> None:
        self.waiting[conn] = pending
        self.poller.register(conn.sock, pending.events, partial(self._on_event, conn))

    def _set_events(self, conn: Any, pending: Pending, events: int) -> None:
        if pending.events != events:
            pending.events = events
            self.poller.modify(conn.sock, events, partial(self._on_event, conn))

    def _unwatch(self, conn: Any) -> None:
        self.waiting.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any, reason: str | None = None) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        conn.close()
        if reason:
            self._closed(reason)

    # -- the event loop's side ----------------------------------------------------------------
    def accept(self, listener: Any) -> None:
        try:
            client, addr = listener.accept()
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, addr, listener.getsockname())  # non-blocking
        now = time.monotonic()
        if self.cfg.is_ssl:
            try:
                conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                    conn.sock,
                    server_side=True,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except (ssl.SSLError, OSError) as e:
                self.log.warning("no TLS context for a new connection: %s", e)
                self.nr_conns -= 1
                conn.close()
                return
            self._watch(conn, Pending(Phase.HANDSHAKE, now + self.deadlines.handshake))
        else:
            self._ready(conn)
            self._watch(conn, Pending(Phase.HEADERS, now + self.deadlines.header))

    def _ready(self, conn: Any) -> None:
        """The transport is up: HTTP/1.1 from here (no ALPN is offered)."""
        conn.initialized = True
        conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)

    def _on_event(self, conn: Any, _fileobj: Any) -> None:
        pending = self.waiting.get(conn)
        if pending is None:
            return
        try:
            if pending.phase is Phase.LINGER:
                self._linger(conn, pending)
            elif pending.phase is Phase.HANDSHAKE:
                if self._handshake(conn, pending):
                    self._read(conn, pending)
            else:
                self._read(conn, pending)
        except (ssl.SSLError, OSError) as e:
            self.log.debug("closing %s during %s: %s", conn.client, pending.phase.value, e)
            self._drop(conn, "handshake_failed" if pending.phase is Phase.HANDSHAKE else "error")

    def _handshake(self, conn: Any, pending: Pending) -> bool:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_events(conn, pending, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._set_events(conn, pending, selectors.EVENT_WRITE)
            return False
        self._ready(conn)
        self._set_events(conn, pending, selectors.EVENT_READ)
        # An established connection with no request yet is idle, like one between requests:
        # Go clients dial connections into their pool before they need them.
        pending.phase, pending.deadline = Phase.IDLE, time.monotonic() + self.cfg.keepalive
        return True  # TLS may already hold decrypted request bytes the poller cannot see

    def _read(self, conn: Any, pending: Pending) -> None:
        self._set_events(conn, pending, selectors.EVENT_READ)
        limit = self.max_body + framing.MAX_HEADER_BYTES
        while len(pending.buf) <= limit:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                break
            except ssl.SSLWantWriteError:
                self._set_events(conn, pending, selectors.EVENT_WRITE)
                return
            if not data:  # closed before sending a whole request
                self._drop(conn)
                return
            if pending.phase is Phase.IDLE:
                pending.phase, pending.deadline = Phase.HEADERS, time.monotonic() + self.deadlines.header
            pending.buf += data
        self._advance(conn, pending)

    def _advance(self, conn: Any, pending: Pending) -> None:
        if pending.need is not None:
            if len(pending.buf) >= pending.need:
                self._dispatch(conn, pending, whole=True)
            return
        if pending.phase is Phase.IDLE:
            return
        scan = framing.scan(pending.buf, self.max_body)
        if scan.headers_done and pending.phase is Phase.HEADERS:
            pending.phase, pending.deadline = Phase.BODY, time.monotonic() + self.deadlines.body
        if scan.verdict is framing.Verdict.INCOMPLETE:
            pending.need = scan.need
            if scan.expect_continue and not pending.continued:
                pending.continued = True
                with contextlib.suppress(ssl.SSLError, OSError):  # if it does not fit, the client sends anyway
                    conn.sock.send(CONTINUE)
            return
        if scan.verdict is framing.Verdict.REJECT:
            self._reject(conn, scan)
            return
        self._dispatch(conn, pending, whole=scan.verdict is framing.Verdict.COMPLETE)

    def _reject(self, conn: Any, scan: framing.Scan) -> None:
        """A body that can never be buffered whole (bad chunk framing, an unsupported coding, over
        the limit): answered here, on the loop, and closed. No thread ever waits for its bytes."""
        self._unwatch(conn)
        body = json.dumps({"error": scan.reason}).encode()
        head = (
            f"HTTP/1.1 {scan.status} {HTTPStatus(scan.status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ssl.SSLError, OSError):  # a peer that cannot take 200 bytes loses them
            conn.sock.send(head.encode() + body)
        self._closed("bad_framing")
        self._close(conn)

    def _dispatch(self, conn: Any, pending: Pending, whole: bool) -> None:
        """A whole request (or one the parser must reject) is buffered: give it a thread.
        Without the whole request (malformed, or over the size limit) the connection is closed
        after the answer, so nothing is ever read from the network in a thread."""
        self._unwatch(conn)
        conn.close_after = not whole
        conn.sock.setblocking(True)
        conn.parser.unreader.unread(bytes(pending.buf))
        conn.data_ready = True
        self.enqueue_req(conn)

    def _close(self, conn: Any) -> None:
        """Half-close, then drain on the loop (RFC 9112 9.6): the peer reads our last answer
        instead of a reset, and the loop never waits for it."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        self._watch(conn, Pending(Phase.LINGER, time.monotonic() + self.deadlines.body))

    def _linger(self, conn: Any, pending: Pending) -> None:
        while pending.drained < LINGER_BYTES:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            if not data:
                break
            pending.drained += len(data)
        self._drop(conn)

    # -- gthread's hooks ----------------------------------------------------------------------
    def handle(self, conn: Any) -> Any:
        """In a thread, with the request buffered. The thread's turn has a deadline."""
        with self.busy_lock:
            self.busy[conn] = time.monotonic() + self.deadlines.response
        try:
            return super().handle(conn)
        finally:
            with self.busy_lock:
                self.busy.pop(conn, None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "close_after", False):
            req.must_close = True  # gunicorn then answers "Connection: close" and drains nothing
        return super().handle_request(req, conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Back on the loop after a thread's turn: keep-alive, a pipelined request, or close."""
        try:
            keep = bool(not fs.cancelled() and fs.result() is True)
        except Exception:
            keep = False
        if not keep:
            self._close(conn)
            return
        try:
            leftover = conn.parser.unreader.take_buffered()
            conn.sock.setblocking(False)
            now = time.monotonic()
            if leftover:  # the client pipelined its next request
                pending = Pending(Phase.HEADERS, now + self.deadlines.header, bytearray(leftover))
                self._watch(conn, pending)
                self._advance(conn, pending)
                return
            deadline = now + self.cfg.keepalive
            if not self.alive:
                deadline = min(deadline, now + gthread.STOP_KEEPALIVE_LINGER)
            pending = Pending(Phase.IDLE, deadline)
            self._watch(conn, pending)
            if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                self._read(conn, pending)
        except (ssl.SSLError, OSError) as e:
            self.log.debug("closing after a response: %s", e)
            self._drop(conn)

    def murder_pending(self) -> None:
        """Every turn of the loop (at least once a second): enforce the deadlines."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.stop_capped:
            self.stop_capped = True
            for p in self.waiting.values():
                if p.phase is Phase.IDLE:
                    p.deadline = min(p.deadline, now + gthread.STOP_KEEPALIVE_LINGER)
        for conn, p in [(c, p) for c, p in self.waiting.items() if p.deadline <= now]:
            if p.phase in (Phase.IDLE, Phase.LINGER):
                self._drop(conn)
            else:
                self.log.debug("closing %s: %s deadline passed", conn.client, p.phase.value)
                self._drop(conn, f"{p.phase.value}_timeout")
        with self.busy_lock:
            late = [c for c, deadline in self.busy.items() if deadline <= now]
            for c in late:
                self.busy[c] = float("inf")  # cut off once
        for conn in late:
            self.log.warning(
                "closing %s: the response was not written within %.0fs", conn.client, self.deadlines.response
            )
            self._closed("response_timeout")
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)  # the thread's blocked call returns

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        if force:
            for conn in list(self.waiting):
                self._drop(conn)


def worker_class(deadlines: Deadlines) -> type[PreReadWorker]:
    """A worker class bound to these settings (gunicorn instantiates it in each worker)."""
    return type("PreReadWorker", (PreReadWorker,), {"deadlines": deadlines})
