"""The application's assembly: which cluster view, which checks, which app, which auditor.

This is the one place that wires the shells together. ``serve`` checks in the master what every
worker will need (so a misconfiguration is one log line and exit status 2, not a crash loop),
then each gunicorn worker builds its own app after the fork with :class:`AppFactory`: its own
metrics, its own cluster view (watch threads do not survive a fork) and its readiness checks.
The auditor process is assembled here too: the API client, a live view of every audited
resource, and the :class:`~webhook.audit.auditor.Auditor` that follows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from dataclasses import dataclass

from flask import Flask

from webhook.admission import logs, serving
from webhook.admission.app import ReadinessCheck, create_app
from webhook.admission.metrics import Metrics
from webhook.admission.probes import HealthPublisher
from webhook.admission.tls import CertReloader
from webhook.audit.auditor import Auditor, AuditorOptions
from webhook.core.engine import Engine, Settings
from webhook.core.index import settle_heap
from webhook.core.view import ClusterView

log = logging.getLogger("webhook")


@dataclass(frozen=True, kw_only=True)
class Wiring:
    """What ``serve`` was asked for, beyond how gunicorn serves it (:class:`serving.ServeOptions`)."""

    settings: Settings
    log_level: str
    log_format: str
    state: str | None = None  # YAML files, polled for changes
    kubeconfig: str | None = None
    live: bool = False  # follow the live cluster (in-cluster configuration or ``kubeconfig``)
    audit: bool = False  # the continuous audit runs beside the workers
    state_poll_interval: float = 1.0
    sync_timeout: float = 20.0
    mesh_configmap: tuple[str, str] | None = ("istio-system", "istio")  # V1: watched when set


def preflight(wiring: Wiring) -> None:
    """What every worker would need, checked once in the master. Raises StateError or ValueError."""
    if wiring.state:  # the file and line of a broken state file
        from webhook.cluster.files import FileView

        FileView(wiring.state)
    if wiring.live:
        from webhook.kube.config import client_configuration

        client_configuration(wiring.kubeconfig)


def make_view(wiring: Wiring, metrics: Metrics) -> ClusterView:
    """Per worker: the live watch-backed view, or the file view (polled for changes)."""
    if wiring.live:
        from webhook.cluster.live import RESOURCES, LiveView, mesh_resource

        mesh = (mesh_resource(wiring.mesh_configmap),) if wiring.mesh_configmap else ()
        live = LiveView.from_kubeconfig(wiring.kubeconfig, metrics, resources=(*RESOURCES, *mesh))
        live.start()
        if live.wait_synced(wiring.sync_timeout):
            settle_heap()  # the synced view is long-lived: keep it out of full collections
        else:
            log.warning(
                "cluster view not synced after %.0fs; serving with StateUnavailable until it is", wiring.sync_timeout
            )
        return live
    from webhook.cluster.files import FileView

    view = FileView(wiring.state)  # settles the heap after every load
    if wiring.state:
        view.start(wiring.state_poll_interval)
    return view


def certificate_check(reloader: CertReloader, metrics: Metrics) -> ReadinessCheck:
    """Ready while the serving pair on disk is usable; exports its expiry and whether it was refused."""

    def check() -> str | None:
        with contextlib.suppress(ssl.SSLError):  # notices a rotation even with no new connection
            reloader.context()
        metrics.cert_expiry.set(reloader.expiry)
        metrics.cert_rejected.set(1 if reloader.rejected else 0)
        return None if reloader.ready else f"serving certificate: {reloader.error or 'expired'}"

    return check


def synced_check(view: ClusterView, metrics: Metrics) -> ReadinessCheck:
    def check() -> str | None:
        synced = view.synced()
        metrics.state_synced.set(1 if synced else 0)
        return None if synced else "cluster view not synced yet"

    return check


@dataclass(frozen=True)
class AppFactory:
    """Builds one worker's app, after the fork."""

    wiring: Wiring

    def __call__(self, reloader: CertReloader | None) -> Flask:
        w = self.wiring
        logs.setup(w.log_level, w.log_format)
        metrics = Metrics(serving.audit_status_path(os.environ) if w.audit else None)
        view = make_view(w, metrics)
        checks: list[ReadinessCheck] = []
        if reloader is not None:
            checks.append(certificate_check(reloader, metrics))
        checks.append(synced_check(view, metrics))
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:  # the probe port's /readyz reads what this publishes every second
            HealthPublisher(directory, checks).start()
        return create_app(Engine(view, w.settings), metrics, checks)


def serve(opts: serving.ServeOptions, wiring: Wiring) -> int:
    """Serve until stopped; 2 for a misconfiguration found before any worker starts."""
    from webhook.cluster.files import StateError

    if wiring.audit and not wiring.live:
        log.error("waypoint-webhook serve: --audit needs --cluster or --kubeconfig (it audits the live cluster)")
        return 2
    if not wiring.live and not wiring.state:
        log.warning("no --state and no --cluster: serving with an empty cluster view")
    try:
        preflight(wiring)
    except (StateError, ValueError) as e:
        log.error("waypoint-webhook serve: %s", e)
        return 2
    try:
        serving.run(opts, AppFactory(wiring))
    except serving.StartupError as e:
        log.error("waypoint-webhook serve: %s", e)
        return 2
    return 0


def auditor(opts: AuditorOptions) -> Auditor:
    """The auditor over the live cluster: every audited resource watched whole. Raises ValueError
    when no client configuration can be found."""
    from kubernetes import client

    from webhook.cluster.live import AUDIT_RESOURCES, LiveView, mesh_resource
    from webhook.kube.config import client_configuration

    api = client.ApiClient(client_configuration(opts.kubeconfig))
    mesh = (mesh_resource(opts.mesh_configmap),) if opts.mesh_configmap else ()
    return Auditor(opts, api, LiveView(api, resources=(*AUDIT_RESOURCES, *mesh)))
