"""The continuous audit: a process beside the gunicorn workers (``serve --audit``) or on its own
(``waypoint-webhook auditor``).

Why a process of its own: a full pass over a large cluster takes seconds of CPU, which inside a
worker would hold the GIL while admission requests wait. Here it costs admission nothing.

It watches what the live view watches (Pods whole), keeps the
:class:`~webhook.audit.tracker.Tracker` current, recomputes what each burst of events can affect
(debounced), and runs a full pass at start and every ``full_pass_interval``.

Once per cluster, not once per replica: with reports on, only the holder of the Lease watches and
audits (and writes PolicyReports, :class:`~webhook.audit.writer.ReportWriter`). The other
replicas are standbys that hold nothing but the Lease loop, so a 100,000-Pod cluster costs the
memory of one view, not three. A replica that loses the Lease re-executes itself (client-go's
controllers exit on a lost lease for the same reason): the view's memory goes back to the OS at
once and the process starts again as a standby. With ``--no-reports`` there is no Lease and every
replica audits (its findings are only in its own ``/metrics``).
What it found is published to ``/metrics`` (the probe port's process) through a small status file, an
:class:`~webhook.core.audit_status.AuditStatus` that :mod:`webhook.admission.metrics` reads,
written atomically after every pass, on every change of leadership and on a heartbeat, so a stale
file shows the auditor is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from webhook.audit import reports
from webhook.audit.lease import LeaseElector
from webhook.audit.tracker import Tracker
from webhook.audit.writer import ReportWriter
from webhook.core.audit_status import AuditStatus, FindingCount
from webhook.core.engine import Settings
from webhook.core.index import Index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditorOptions:
    settings: Settings = field(default_factory=Settings)
    kubeconfig: str | None = None
    lease_namespace: str = "waypoint-webhook"
    lease_name: str = "waypoint-webhook-audit"
    identity: str = ""
    status_file: str | None = None
    reports: bool = True
    debounce: float = 1.0
    full_pass_interval: float = 600.0
    heartbeat: float = 10.0
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    lease_retry: float = 2.0
    report_retry: float = 60.0  # how often to look again for the report CRDs
    report_api: str = "auto"  # a key of reports.CHOICES: the group reports are written to
    write_qps: float = 20.0
    exit_with_parent: bool = False
    mesh_configmap: tuple[str, str] | None = ("istio-system", "istio")  # V1: istiod's MeshConfig


class WatchedView(Protocol):
    """The cluster as the auditor follows it: the live view's watches (the command line builds one
    with every audited resource, Pods whole), feeding ``index`` and calling ``observer`` after each
    event it applied."""

    index: Index
    observer: Callable[[Mapping[str, Any], bool], None] | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def synced(self) -> bool: ...

    def wait_synced(self, timeout: float) -> bool: ...


class StatusFile:
    """What ``/metrics`` shows of the audit, replaced atomically."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self, status: AuditStatus) -> None:
        if not self.path:
            return
        directory = os.path.dirname(self.path) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=directory)
            with os.fdopen(fd, "w") as f:
                json.dump(status.to_json(), f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot write the audit status %s: %s", self.path, e)


class Auditor:
    """``api`` is the API client the Lease and the reports are written with; ``view`` follows the
    cluster (both made by the command line, which owns the choice of backend)."""

    def __init__(self, opts: AuditorOptions, api: Any, view: WatchedView) -> None:
        self.opts = opts
        self.stop_event = threading.Event()
        self.view = view
        self.tracker = Tracker(view.index, opts.settings)
        view.observer = self.tracker.observe
        self.status_due = threading.Event()  # something the status file shows has changed
        self.writer = ReportWriter(
            api, self.tracker, opts.write_qps, opts.report_retry, self.status_due.set, reports.CHOICES[opts.report_api]
        )
        self.elector = LeaseElector(
            api,
            opts.lease_namespace,
            opts.lease_name,
            opts.identity or f"{socket.gethostname()}_{os.getpid()}",
            self._started_leading,
            self._stopped_leading,
            opts.lease_duration,
            opts.renew_deadline,
            opts.lease_retry,
        )
        self.status = StatusFile(opts.status_file)
        self._publishing = threading.Lock()
        self.last_full_pass = 0.0
        self.full_pass_seconds = 0.0
        self.incremental_seconds = 0.0
        self.passes = 0
        self.watching = False  # the view has been started (a standby never starts it)
        self.lost = threading.Event()  # the Lease was lost while auditing: start again as a standby

    def _started_leading(self) -> None:
        self.publish()  # before the first report: /metrics never shows a report writer that does not lead
        self.writer.start_leading()

    def _stopped_leading(self) -> None:
        self.writer.stop_leading()
        if not self.stop_event.is_set():
            self.lost.set()
        self.publish()

    def publish(self) -> None:
        """Write the status file now (the audit loop and the Lease's thread both call it)."""
        with self._publishing:
            self.status.write(self.snapshot())

    def snapshot(self) -> AuditStatus:
        counts = dict(self.tracker.counts)
        return AuditStatus(
            pid=os.getpid(),
            updated=time.time(),
            synced=self.view.synced(),
            last_full_pass=self.last_full_pass,
            full_pass_seconds=self.full_pass_seconds,
            incremental_seconds=self.incremental_seconds,
            objects=self.tracker.size(),
            leader=self.elector.leading.is_set(),
            standby=self.opts.reports and not self.watching,
            reports_available=self.writer.available,
            reports_api=self.writer.using.api_version if self.writer.using and self.writer.available else "",
            writes=self.writer.writes,
            findings=tuple(
                FindingCount(code=code, severity=sev, kind=kind, namespace=ns, count=n)
                for (code, sev, kind, ns), n in sorted(counts.items())
            ),
        )

    def full_pass(self) -> None:
        started = time.monotonic()
        self.tracker.mark_all()
        self.writer.enqueue(self.tracker.recompute())
        self.writer.resync()  # compare with the reports that do exist: a deleted one comes back
        self.full_pass_seconds = time.monotonic() - started
        self.last_full_pass = time.time()
        self.writer.ready.set()  # the tracker now holds the cluster: reports may be compared with it
        log.info(
            "audit: full pass over %d objects in %.2fs; %d with findings",
            self.tracker.size(),
            self.full_pass_seconds,
            len(self.tracker.with_findings()),
        )

    def run(self) -> None:
        o = self.opts
        parent = os.getppid()
        try:
            if o.reports:
                self.writer.start()
                self.elector.start()
                if not self._standby(o, parent):
                    return
            self.watching = True
            self.view.start()
            if self._sync(o, parent):
                self.full_pass()
                self.publish()
                self._follow(o, parent)
        finally:
            self.shutdown()

    def _orphaned(self, o: AuditorOptions, parent: int) -> bool:
        return o.exit_with_parent and os.getppid() != parent

    def _standby(self, o: AuditorOptions, parent: int) -> bool:
        """Hold nothing until this replica leads; False when stopped first."""
        while not self.stop_event.is_set():
            if self.elector.leading.wait(min(1.0, o.heartbeat)):
                log.info("audit: leading; watching the cluster")
                return True
            self.publish()
            if self._orphaned(o, parent):
                return False
        return False

    def _sync(self, o: AuditorOptions, parent: int) -> bool:
        while not self.stop_event.is_set() and not self.view.wait_synced(min(1.0, o.heartbeat)):
            self.publish()
            if self._orphaned(o, parent) or self.lost.is_set():
                return False
        return not self.stop_event.is_set()

    def _follow(self, o: AuditorOptions, parent: int) -> None:
        """Incremental passes after events, full passes on schedule, until stopped or the Lease is lost."""
        while not self.stop_event.is_set() and not self.lost.is_set():
            if self._wait(o):
                self.stop_event.wait(o.debounce)  # let a burst (a namespace relabelled…) settle
                started = time.monotonic()
                changed = self.tracker.recompute()
                self.incremental_seconds = time.monotonic() - started
                self.writer.enqueue(changed)
                self.passes += 1
            if time.time() >= self.last_full_pass + o.full_pass_interval:
                self.full_pass()
            self.status_due.clear()
            self.publish()
            if self._orphaned(o, parent):
                log.warning("audit: the server is gone; exiting")
                return

    def _wait(self, o: AuditorOptions) -> bool:
        """Until something is dirty (True), or the heartbeat, the next full pass or a status change
        is due (False). Polls the status flag twice a second: cheaper than a second condition."""
        deadline = time.monotonic() + max(
            0.0, min(o.heartbeat, self.last_full_pass + o.full_pass_interval - time.time())
        )
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if self.tracker.wait_dirty(max(0.0, min(0.5, left))):
                return True
            if left <= 0.5 or self.status_due.is_set():
                return False
        return False

    def shutdown(self) -> None:
        self.view.stop()
        self.elector.stop()  # releases the Lease: the next replica writes at once
        self.writer.stop()


def run(auditor: Auditor) -> int:
    """Run until SIGTERM or SIGINT. Returns the exit status."""

    def stop(signum: int, frame: FrameType | None) -> None:
        auditor.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    auditor.run()
    if auditor.lost.is_set() and not auditor.stop_event.is_set():
        log.warning("audit: lost the Lease; starting again as a standby")
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0
