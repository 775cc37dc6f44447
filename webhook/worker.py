"""gunicorn's gthread worker, made safe for TLS clients that open connections they do not use.

Go's HTTP client, and so kube-apiserver, dials connections it may leave idle in its pool. Over
TLS the stock worker hands a new connection to a thread, completes the handshake and then blocks
that thread reading a request that may never come; with as many idle connections as threads the
worker deadlocks while real requests queue behind them (gunicorn#2917; reproduced in
tests/server/test_server.py). gthread already parks plain connections on its poller until they
are readable. This worker does the same after the TLS handshake: a thread is committed only when
request bytes are there, and the handshake itself has a deadline.

It relies on gthread internals (``_DEFER``, ``TConn.wait_for_data``, ``data_ready``,
``initialized``), hence the ``gunicorn>=27,<28`` pin; the import fails loudly if they change.
"""

from __future__ import annotations

import ssl
from typing import Any

from gunicorn.workers import gthread

HANDSHAKE_TIMEOUT = 5.0  # seconds a thread may spend on one TLS handshake
REQUEST_GRACE = 0.005  # how long a fresh connection may keep its thread waiting for the first request

_DEFER = gthread._DEFER
_DATA_TIMEOUT = gthread.DEFAULT_WORKER_DATA_TIMEOUT
if not hasattr(gthread.TConn, "wait_for_data"):  # pragma: no cover - guarded by the version pin
    raise ImportError("webhook.worker needs gunicorn 27's gthread worker (TConn.wait_for_data)")


class TLSThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    def handle(self, conn: Any) -> Any:
        if self.cfg.is_ssl and not conn.initialized:
            if not conn.data_ready and not conn.wait_for_data(_DATA_TIMEOUT):
                return _DEFER  # no ClientHello yet: wait on the poller, not in a thread
            try:
                conn.sock.setblocking(True)
                conn.sock.settimeout(HANDSHAKE_TIMEOUT)
                conn.init()  # wraps the socket and completes the handshake
                conn.sock.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                self.log.debug("TLS handshake failed: %s", e)
                return False  # finish_request closes the connection
            conn.data_ready = False
            if not conn.sock.pending() and not conn.wait_for_data(REQUEST_GRACE):
                return _DEFER  # handshake done, no request yet: park it on the poller
        return super().handle(conn)
