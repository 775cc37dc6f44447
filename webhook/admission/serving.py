"""Run the Flask app under gunicorn as it is deployed: TLS, ``gthread`` workers, long keep-alive.

Why these choices: the ``sync`` worker closes every connection, and over TLS a handshake per
request costs about ten times the throughput; ``gthread`` keeps the API server's connections
open. The worker (:mod:`webhook.admission.worker`) is gthread changed so that no client can hold a thread:
requests are read on the event loop, each phase with a deadline. Keep-alive (120 s by default)
outlasts the API server's 90 s idle timeout, so the server never closes a connection the client
is about to reuse.

Each worker builds its own app after the fork (its own cluster view and watch threads), so no
state is shared between processes and nothing is inherited half-initialised.

Beside the workers the master supervises two processes: the probe port
(:mod:`webhook.admission.probes`: ``/healthz``, ``/readyz`` and ``/metrics``, never on a thread
an admission request waits for) and, with ``--audit``, the continuous audit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from webhook.admission.tls import CertReloader
from webhook.admission.worker import Deadlines, worker_class

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
    client_ca: str | None = None
    probe_port: int | None = 8080  # None: no probe port (and no /metrics)
    deadlines: Deadlines = field(default_factory=Deadlines)
    log_level: str = "info"
    log_format: str = "text"
    metrics_cache: float = 1.0  # seconds a rendering of /metrics is served again
    probe_tls: bool = False  # the probe port over TLS with the serving certificate
    sidecar: tuple[str, ...] = ()  # argv of a process to run beside the workers (the auditor)


class StartupError(Exception):
    """A misconfiguration found before any worker starts. ``serve`` logs it as one line and exits
    with status 2, instead of forking workers that each fail to boot (a crash loop in a pod)."""


def prepare_metrics_dir(environ: MutableMapping[str, str]) -> str | None:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` usable; return the directory if ``serve`` created it.

    prometheus-client's multiprocess mode needs the directory to exist and be writable before the
    first metric is touched, and a previous run's files would add stale counts (the library's
    documented rule is to wipe it at start-up). The shipped Deployment points it at an emptyDir
    (``/tmp`` is empty at container start), so it is created here, never assumed."""
    path = environ.get("PROMETHEUS_MULTIPROC_DIR")
    own = None
    try:
        if not path:
            path = own = tempfile.mkdtemp(prefix="waypoint-webhook-metrics-")
            environ["PROMETHEUS_MULTIPROC_DIR"] = path
        else:
            os.makedirs(path, mode=0o700, exist_ok=True)
            for stale in (*Path(path).glob("*.db"), *Path(path).glob("health-*.json")):
                stale.unlink()
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise StartupError(
            f"metrics directory PROMETHEUS_MULTIPROC_DIR={path}: {e.strerror or e}; "
            "point it at a writable directory (an emptyDir) or unset it"
        ) from None
    return own


AUDIT_STATUS = "audit-status.json"


def audit_status_path(environ: MutableMapping[str, str]) -> str | None:
    """Where the auditor publishes its results for the workers' ``/metrics``."""
    directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
    return os.path.join(directory, AUDIT_STATUS) if directory else None


class Sidecar:
    """A process the gunicorn master runs beside its workers and restarts when it dies.

    Started when the master is ready (after the first workers forked) and stopped when it exits:
    SIGTERM, then SIGKILL after ``grace`` seconds. It gets its own environment (no
    ``PROMETHEUS_MULTIPROC_DIR``: its counters are not the workers'). Restarts back off from 1 s
    to 60 s; a process that ran for a minute resets the backoff."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], grace: float = 10.0, pass_fds: Sequence[int] = ()
    ) -> None:
        self.argv, self.env, self.grace, self.pass_fds = list(argv), dict(env), grace, tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="sidecar", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.proc = subprocess.Popen(self.argv, env=self.env, pass_fds=self.pass_fds)
            except OSError as e:
                log.error("cannot start %s: %s", self.argv[:4], e)
            else:
                code = self.proc.wait()
                if self.stopping.is_set():
                    return
                log.warning("%s exited with status %s; restarting in %.0fs", " ".join(self.argv[1:4]), code, backoff)
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 60.0)

    def stop(self) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WebhookServer(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        opts: ServeOptions,
        build_app: Callable[[CertReloader | None], Flask],
        reloader: CertReloader | None,
        sidecars: Sequence[Sidecar] = (),
        inherited: Sequence[socket.socket] = (),
    ) -> None:
        """``inherited``: sockets of the master's own (the probe port) that workers must not hold."""
        self.opts = opts
        self.build_app = build_app
        self.reloader = reloader
        self.sidecars = tuple(sidecars)
        self.inherited = tuple(inherited)
        super().__init__()

    def load_config(self) -> None:
        o = self.opts
        host = f"[{o.host}]" if ":" in o.host else o.host
        sidecars, inherited = self.sidecars, self.inherited
        settings: dict[str, Any] = {
            "bind": [f"{host}:{o.port}"],
            "workers": o.workers,
            "worker_class": worker_class(o.deadlines),
            "threads": o.threads,
            "keepalive": o.keepalive,
            "timeout": o.timeout,
            "graceful_timeout": o.graceful_timeout,
            "loglevel": o.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "waypoint-webhook",
            "child_exit": _child_exit,
            "when_ready": lambda server: _each(sidecars, Sidecar.start),
            "on_exit": lambda server: _each(sidecars, Sidecar.stop),
            "post_fork": lambda server, worker: _each(inherited, socket.socket.close),
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


def _each(items: Sequence[Any], action: Callable[[Any], None]) -> None:
    for item in items:
        action(item)


def _child_exit(server: Any, worker: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        from webhook.admission.probes import health_path

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError):
            os.unlink(health_path(directory, worker.pid))


def bind_probe_port(host: str, port: int) -> socket.socket:
    """Bound and listening before any fork, so a port in use stops ``serve`` with one clear line."""
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=64)
    except OSError as e:
        raise StartupError(f"--probe-port {port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _sidecars(opts: ServeOptions, probe: socket.socket | None) -> list[Sidecar]:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    status = audit_status_path(os.environ)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = []
    if probe is not None:
        argv = [sys.executable, "-m", "webhook.admission.probes", "--fd", str(probe.fileno()), "--dir", directory]
        argv += ["--cache-seconds", str(opts.metrics_cache), "--log-level", opts.log_level]
        argv += ["--log-format", opts.log_format, *(["--audit-status", status] if opts.sidecar and status else [])]
        if opts.probe_tls and opts.tls_cert and opts.tls_key:
            argv += ["--tls-cert", opts.tls_cert, "--tls-key", opts.tls_key]
        out.append(Sidecar(argv, env, grace=5.0, pass_fds=(probe.fileno(),)))
    if opts.sidecar:
        out.append(Sidecar([*opts.sidecar, *(["--status-file", status] if status else []), "--exit-with-parent"], env))
    return out


def _reloader(opts: ServeOptions) -> CertReloader | None:
    if not (opts.tls_cert or opts.tls_key):
        if opts.client_ca:
            raise StartupError("--client-ca needs --tls-cert and --tls-key")
        log.warning("serving plain HTTP: the API server only calls webhooks over TLS")
        return None
    if not (opts.tls_cert and opts.tls_key):
        raise StartupError("--tls-cert and --tls-key go together")
    reloader = CertReloader(opts.tls_cert, opts.tls_key, opts.cert_reload_interval, opts.client_ca)
    if reloader.error:
        raise StartupError(reloader.error)
    return reloader


def run(opts: ServeOptions, build_app: Callable[[CertReloader | None], Flask]) -> None:
    """Serve until stopped. Raises :class:`StartupError` before forking if the certificate pair,
    the metrics directory or the probe port is unusable."""
    reloader = _reloader(opts)
    own_dir = prepare_metrics_dir(os.environ)
    # prometheus-client chooses its value backend at import, which happened before the variable
    # was set; choose again so the workers forked below write per-process files.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    probe = bind_probe_port(opts.host, opts.probe_port) if opts.probe_port else None
    try:
        WebhookServer(opts, build_app, reloader, _sidecars(opts, probe), [probe] if probe else []).run()
    finally:
        if probe is not None:
            probe.close()
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
