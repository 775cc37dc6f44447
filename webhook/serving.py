"""Run the Flask app under gunicorn as it is deployed: TLS, ``gthread`` workers, long keep-alive.

Why these choices (notes, takeaway 2): the ``sync`` worker closes every connection, and over
TLS a handshake per request costs about ten times the throughput; ``gthread`` keeps the API
server's connections open. The worker is gthread with one fix for TLS (:mod:`webhook.worker`):
idle connections wait on the poller instead of holding a thread. Keep-alive (120 s by default) outlasts the API server's 90 s idle
timeout, so the server never closes a connection the client is about to reuse.

Each worker builds its own app after the fork (its own cluster view and watch threads), so no
state is shared between processes and nothing is inherited half-initialised.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from webhook.tls import CertReloader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "0.0.0.0"
    port: int = 8443
    workers: int = 2
    threads: int = 4
    keepalive: int = 120
    timeout: int = 30
    graceful_timeout: int = 20
    tls_cert: str | None = None
    tls_key: str | None = None
    cert_reload_interval: float = 2.0
    log_level: str = "info"


class WebhookServer(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        opts: ServeOptions,
        build_app: Callable[[CertReloader | None], Flask],
        reloader: CertReloader | None,
    ) -> None:
        self.opts = opts
        self.build_app = build_app
        self.reloader = reloader
        super().__init__()

    def load_config(self) -> None:
        o = self.opts
        host = f"[{o.host}]" if ":" in o.host else o.host
        settings: dict[str, Any] = {
            "bind": [f"{host}:{o.port}"],
            "workers": o.workers,
            "worker_class": "webhook.worker.TLSThreadWorker",
            "threads": o.threads,
            "keepalive": o.keepalive,
            "timeout": o.timeout,
            "graceful_timeout": o.graceful_timeout,
            "loglevel": o.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "waypoint-webhook",
            "child_exit": _child_exit,
        }
        if self.reloader is not None:
            reloader = self.reloader
            settings["certfile"] = o.tls_cert
            settings["keyfile"] = o.tls_key
            settings["ssl_context"] = lambda conf, default_factory: reloader.context()
        # gunicorn >= 24 opens a control socket under $HOME: useless here, and impossible on a
        # read-only root filesystem; several instances would also share its path.
        if "control_socket_disable" in self.cfg.settings:
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.build_app(self.reloader)


def _child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def run(opts: ServeOptions, build_app: Callable[[CertReloader | None], Flask]) -> None:
    reloader = None
    if opts.tls_cert or opts.tls_key:
        if not (opts.tls_cert and opts.tls_key):
            raise SystemExit("waypoint-webhook serve: --tls-cert and --tls-key go together")
        reloader = CertReloader(opts.tls_cert, opts.tls_key, opts.cert_reload_interval)
        if reloader.error:
            raise SystemExit(f"waypoint-webhook serve: {reloader.error}")
    else:
        log.warning("serving plain HTTP: the API server only calls webhooks over TLS")
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="waypoint-webhook-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    # prometheus-client chooses its value backend at import, which happened before the variable
    # was set; choose again so the workers forked below write per-process files.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        WebhookServer(opts, build_app, reloader).run()
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
