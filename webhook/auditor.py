"""The continuous audit: a process beside the gunicorn workers (``serve --audit``) or on its own
(``waypoint-webhook auditor``).

Why a process of its own: a full pass over a large cluster takes seconds of CPU, which inside a
worker would hold the GIL while admission requests wait. Here it costs admission nothing.

It watches what the live view watches (Pods whole), keeps the :class:`~webhook.tracker.Tracker`
current, recomputes what each burst of events can affect (debounced), and runs a full pass at
start and every ``full_pass_interval``. Every replica audits; the holder of the Lease also writes
PolicyReports (:class:`ReportWriter`). What it found is published to the workers' ``/metrics``
through a small status file (:mod:`webhook.metrics` reads it), written atomically after every
pass and on a heartbeat, so a stale file shows the auditor is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from webhook import kubeapi, reports
from webhook.engine import Settings
from webhook.kinds import CLUSTER_SCOPED
from webhook.kubeapi import Query
from webhook.lease import LeaseElector
from webhook.state.live import AUDIT_RESOURCES, LiveView, client_configuration
from webhook.tracker import Audited, ObjKey, Tracker

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
    report_retry: float = 60.0  # how often to look again for the PolicyReport CRD
    write_qps: float = 20.0
    exit_with_parent: bool = False


@dataclass
class Written:
    """A report as the API server holds it (after our write, or as listed)."""

    namespace: str
    name: str
    resource_version: str
    content: tuple[Any, ...]
    since: dict[tuple[str, str], int]


class Unavailable(Exception):
    """The PolicyReport CRD is not installed."""


class ReportWriter:
    """Keeps one report per object with findings, while this replica holds the Lease.

    On taking the lead it lists the reports that exist (ours carry a label), then writes only
    what differs and deletes what no object needs: a failover rewrites nothing that is already
    right. Writes are paced to ``qps``."""

    def __init__(
        self, api: Any, tracker: Tracker, qps: float, retry: float, on_progress: Callable[[], None] = lambda: None
    ) -> None:
        self.api, self.tracker, self.retry = api, tracker, retry
        self.on_progress = on_progress  # after a batch: the status file shows the new counts
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.leading = threading.Event()
        self.stopped = threading.Event()
        self._cond = threading.Condition()
        self._pending: set[ObjKey] = set()
        self._resync = False
        self.available: bool | None = None  # unknown until the first listing
        self.written: dict[ObjKey, Written] = {}
        self.writes: dict[str, int] = {"create": 0, "update": 0, "delete": 0, "error": 0}
        self._next_write = 0.0
        self._last_try = -1e9
        self._failures = 0  # consecutive failed batches: the backoff, and how often to log
        self.thread = threading.Thread(target=self.run, name="reports", daemon=True)

    # -- called by the lease and the audit loop --
    def start_leading(self) -> None:
        with self._cond:
            self.leading.set()
            self._resync = True
            self._cond.notify_all()

    def stop_leading(self) -> None:
        self.leading.clear()

    def enqueue(self, keys: Iterable[ObjKey]) -> None:
        with self._cond:
            self._pending.update(keys)
            if self._pending:
                self._cond.notify_all()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()
        self.thread.join(5)

    def _call(self, method: str, path: str, body: Any = None, query: Query | None = None) -> tuple[int, Any]:
        return kubeapi.call(self.api, method, path, body, query)

    def _pace(self) -> None:
        wait = self._next_write - time.monotonic()
        if wait > 0:
            self.stopped.wait(wait)
        self._next_write = max(self._next_write, time.monotonic()) + self.interval

    # -- loop --
    def _ready(self) -> bool:
        if self.stopped.is_set():
            return True
        if not self.leading.is_set():
            return False
        if self.available is False:  # no CRD: look again every ``retry`` seconds, not at every event
            return time.monotonic() - self._last_try >= self.retry
        return self._resync or bool(self._pending)

    def run(self) -> None:
        while not self.stopped.is_set():
            with self._cond:
                self._cond.wait_for(self._ready, timeout=1.0)
                if self.stopped.is_set():
                    return
                if not self._ready():
                    continue
                resync = self._resync or self.available is not True
                self._resync = False
                pending, self._pending = self._pending, set()
            try:
                if resync:
                    self._last_try = time.monotonic()
                    pending |= self._list()
                for key in sorted(pending):
                    if not self.leading.is_set() or self.stopped.is_set():
                        self.enqueue([key])  # written by whoever leads next, or when we lead again
                        continue
                    self._sync(key)
                self.on_progress()
            except Unavailable:
                if self.available is not False:
                    log.info(
                        "PolicyReport CRD (%s) not installed: reports are not written; looking again every %.0fs",
                        reports.API_VERSION,
                        self.retry,
                    )
                self.available = False
                self.on_progress()
                self.enqueue(pending)
            except Exception as e:  # RBAC missing, API server away: retry, backing off to a minute
                self.writes["error"] += 1
                if self._failures == 0 or self._failures % 10 == 0:
                    log.warning("writing reports: %s: %s (retrying with backoff)", type(e).__name__, e)
                self._failures += 1
                self.enqueue(pending)
                with self._cond:
                    self._resync = True
                self.stopped.wait(min(60.0, 2.0 * 2 ** min(self._failures - 1, 5)))
            else:
                if self._failures:
                    log.info("writing reports again after %d failure(s)", self._failures)
                self._failures = 0

    def _list(self) -> set[ObjKey]:
        """Read every report we own; return the keys to look at (ours, and every finding)."""
        listed: dict[ObjKey, Written] = {}
        extra: list[tuple[str, str]] = []
        for namespaced in (True, False):
            path = f"/apis/{reports.API_VERSION}/{'policyreports' if namespaced else 'clusterpolicyreports'}"
            try:
                items = list(
                    kubeapi.list_items(self.api, path, [("labelSelector", f"{reports.MANAGED_BY}={reports.MANAGER}")])
                )
            except kubeapi.NotServed:
                raise Unavailable() from None
            for item in items:
                meta, scope = item.get("metadata") or {}, item.get("scope") or {}
                kind = scope.get("kind") or ""
                key = (kind, "" if kind in CLUSTER_SCOPED else scope.get("namespace") or "", scope.get("name") or "")
                w = Written(
                    meta.get("namespace") or "",
                    meta.get("name") or "",
                    meta.get("resourceVersion") or "",
                    reports.content(item),
                    reports.since_of(item),
                )
                if key in listed:
                    extra.append((w.namespace, w.name))  # a second report for one object
                else:
                    listed[key] = w
        if self.available is not True:
            log.info("PolicyReport CRD found: writing reports (%d of ours exist)", len(listed))
        self.available = True
        self.written = listed
        for ns, name in extra:
            self._delete(ns, name)
        return set(listed) | set(self.tracker.with_findings())

    def _delete(self, ns: str, name: str) -> None:
        self._pace()
        status, _ = self._call("DELETE", f"{reports.collection(ns)}/{name}")
        if status >= 300 and status != 404:
            raise RuntimeError(f"deleting report {ns}/{name}: HTTP {status}")
        self.writes["delete"] += 1

    def _sync(self, key: ObjKey) -> None:
        """Make the API server hold exactly the report ``key`` needs (or none)."""
        audited = self.tracker.get(key)
        have = self.written.get(key)
        if audited is None or not audited.results:
            if have is not None:
                self._delete(have.namespace, have.name)
                del self.written[key]
            return
        desired = self._render(key, audited, have)
        ns, name = key[1], desired["metadata"]["name"]
        if have is not None and (have.namespace, have.name) == (ns, name) and have.content == reports.content(desired):
            return
        if have is not None and (have.namespace, have.name) != (ns, name):
            self._delete(have.namespace, have.name)  # the object was recreated: a new uid, a new name
            have = None
        self._pace()
        path = reports.collection(ns)
        if have is not None:
            desired["metadata"]["resourceVersion"] = have.resource_version
            status, body = self._call("PUT", f"{path}/{name}", desired)
            op = "update"
            if status in (404, 409):  # deleted or changed under us: start from what is there
                status, body = self._replace(path, name, desired)
        else:
            status, body = self._call("POST", path, desired)
            op = "create"
            if status == 409:  # exists but not known to us (listed before it was made)
                status, body = self._replace(path, name, desired)
                op = "update"
        if status == 404 and "namespaces/" in path:
            return  # the namespace is being deleted: nothing to report on
        if status >= 300:
            raise RuntimeError(f"writing report {ns}/{name}: HTTP {status}: {str(body)[:200]}")
        self.writes[op] += 1
        meta = body.get("metadata") or {}
        self.written[key] = Written(
            ns, name, meta.get("resourceVersion") or "", reports.content(body), reports.since_of(body)
        )

    def _replace(self, path: str, name: str, desired: dict[str, Any]) -> tuple[int, Any]:
        status, current = self._call("GET", f"{path}/{name}")
        if status == 404:
            desired["metadata"].pop("resourceVersion", None)
            return self._call("POST", path, desired)
        if status >= 300:
            return status, current
        desired["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        return self._call("PUT", f"{path}/{name}", desired)

    def _render(self, key: ObjKey, audited: Audited, have: Written | None) -> dict[str, Any]:
        kind, ns, name = key
        return reports.render(
            audited.api_version,
            kind,
            ns,
            name,
            audited.uid,
            audited.results,
            have.since if have else {},
            int(time.time()),
        )


class StatusFile:
    """What the workers' ``/metrics`` shows of the audit, replaced atomically."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self, status: dict[str, Any]) -> None:
        if not self.path:
            return
        directory = os.path.dirname(self.path) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=directory)
            with os.fdopen(fd, "w") as f:
                json.dump(status, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot write the audit status %s: %s", self.path, e)


class Auditor:
    def __init__(self, opts: AuditorOptions, api: Any) -> None:
        self.opts = opts
        self.stop_event = threading.Event()
        self.view = LiveView(api, resources=AUDIT_RESOURCES)
        self.tracker = Tracker(self.view.index, opts.settings)
        self.view.observer = self.tracker.observe
        self.status_due = threading.Event()  # something the status file shows has changed
        self.writer = ReportWriter(api, self.tracker, opts.write_qps, opts.report_retry, self.status_due.set)
        identity = opts.identity or f"{socket.gethostname()}_{os.getpid()}"

        def started() -> None:
            self.writer.start_leading()
            self.status_due.set()

        def stopped() -> None:
            self.writer.stop_leading()
            self.status_due.set()

        self.elector = LeaseElector(
            api,
            opts.lease_namespace,
            opts.lease_name,
            identity,
            started,
            stopped,
            opts.lease_duration,
            opts.renew_deadline,
            opts.lease_retry,
        )
        self.status = StatusFile(opts.status_file)
        self.last_full_pass = 0.0
        self.full_pass_seconds = 0.0
        self.incremental_seconds = 0.0
        self.passes = 0

    def snapshot(self) -> dict[str, Any]:
        counts = dict(self.tracker.counts)
        return {
            "pid": os.getpid(),
            "updated": time.time(),
            "synced": self.view.synced(),
            "last_full_pass": self.last_full_pass,
            "full_pass_seconds": self.full_pass_seconds,
            "incremental_seconds": self.incremental_seconds,
            "objects": self.tracker.size(),
            "leader": self.elector.leading.is_set(),
            "reports_available": self.writer.available,
            "writes": dict(self.writer.writes),
            "findings": [[*k, n] for k, n in sorted(counts.items())],
        }

    def full_pass(self) -> None:
        started = time.monotonic()
        self.tracker.mark_all()
        self.writer.enqueue(self.tracker.recompute())
        self.full_pass_seconds = time.monotonic() - started
        self.last_full_pass = time.time()
        log.info(
            "audit: full pass over %d objects in %.2fs; %d with findings",
            self.tracker.size(),
            self.full_pass_seconds,
            len(self.tracker.with_findings()),
        )

    def run(self) -> None:
        o = self.opts
        parent = os.getppid()
        self.view.start()
        if o.reports:
            self.writer.start()
            self.elector.start()
        try:
            while not self.stop_event.is_set() and not self.view.wait_synced(min(1.0, o.heartbeat)):
                self.status.write(self.snapshot())
                if o.exit_with_parent and os.getppid() != parent:
                    return
            if self.stop_event.is_set():
                return
            self.full_pass()
            self.status.write(self.snapshot())
            while not self.stop_event.is_set():
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
                self.status.write(self.snapshot())
                if o.exit_with_parent and os.getppid() != parent:
                    log.warning("audit: the server is gone; exiting")
                    return
        finally:
            self.shutdown()

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


def run(opts: AuditorOptions) -> int:
    """Run until SIGTERM or SIGINT. Returns the exit status."""
    from kubernetes import client

    try:
        cfg = client_configuration(opts.kubeconfig)
    except ValueError as e:
        log.error("waypoint-webhook auditor: %s", e)
        return 2
    auditor = Auditor(opts, client.ApiClient(cfg))

    def stop(signum: int, frame: FrameType | None) -> None:
        auditor.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    auditor.run()
    return 0
