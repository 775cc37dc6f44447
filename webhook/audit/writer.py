"""The report writer: a reconcile loop, as Kyverno's report controller runs one.

What should exist comes from the tracker (one report per object with findings); what does exist
comes from listing the reports we own (on taking the lead, when the CRD appears, after a listing
failed) and from our own writes since. Each object's key is reconciled on its own: desired
against existing, then one create, update or delete. A key whose write fails is retried with a
backoff of its own while every other key goes on, so one report the API server refuses never
holds back the rest. Writes are paced to ``qps``, and only the Lease holder writes.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from webhook.audit import reports
from webhook.audit.tracker import Audited, ObjKey, Tracker
from webhook.core.kinds import CLUSTER_SCOPED
from webhook.kube import api as kubeapi
from webhook.kube.api import Query

log = logging.getLogger(__name__)

RETRY_BASE = 2.0  # seconds before a failed key is tried again; doubled per failure
RETRY_CAP = 60.0


def retry_after(failures: int) -> float:
    """The per-key backoff: 2 s, 4 s, … capped at a minute."""
    return float(min(RETRY_CAP, RETRY_BASE * 2 ** min(max(failures, 1) - 1, 5)))


@dataclass
class Written:
    """A report as the API server holds it (after our write, or as listed)."""

    namespace: str
    name: str
    resource_version: str
    content: tuple[Any, ...]
    since: dict[tuple[str, str], int]

    @classmethod
    def of(cls, report: dict[str, Any]) -> Written:
        meta = report.get("metadata") or {}
        return cls(
            meta.get("namespace") or "",
            meta.get("name") or "",
            meta.get("resourceVersion") or "",
            reports.content(report),
            reports.since_of(report),
        )


class Unavailable(Exception):
    """No report CRD of the groups chosen is installed."""


@dataclass
class WorkQueue:
    """Keys to reconcile, each due at a time of its own (client-go's delaying queue): a key added
    again before it is due keeps the earlier time."""

    due: dict[ObjKey, float] = field(default_factory=dict)
    _heap: list[tuple[float, ObjKey]] = field(default_factory=list)

    def add(self, key: ObjKey, at: float = 0.0) -> None:
        if key in self.due and self.due[key] <= at:
            return
        self.due[key] = at
        heapq.heappush(self._heap, (at, key))

    def pop_due(self, now: float) -> list[ObjKey]:
        out: list[ObjKey] = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self.due.get(key) == at:
                del self.due[key]
                out.append(key)
        return sorted(out)

    def next_due(self) -> float | None:
        while self._heap and self.due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded by an earlier time
        return self._heap[0][0] if self._heap else None


@dataclass
class WriteCounts:
    create: int = 0
    update: int = 0
    delete: int = 0
    error: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"create": self.create, "update": self.update, "delete": self.delete, "error": self.error}


class ReportWriter:
    """Keeps one report per object with findings, while this replica holds the Lease."""

    def __init__(
        self,
        api: Any,
        tracker: Tracker,
        qps: float,
        retry: float,
        on_progress: Callable[[], None] = lambda: None,
        apis: tuple[reports.ReportApi, ...] = reports.APIS,
    ) -> None:
        self.api, self.tracker, self.retry = api, tracker, retry
        # The groups to write to, in order of preference: the first one served is used, and our
        # reports in any other group are deleted, so switching groups moves the reports.
        self.apis = apis
        self.using: reports.ReportApi | None = None
        self.on_progress = on_progress  # after a round: the status file shows the new counts
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.leading = threading.Event()
        # Set by the auditor after its first full pass: before it the tracker is empty, and
        # comparing the reports with it would delete every one of them.
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self._cond = threading.Condition()
        self._queue = WorkQueue()
        self._failures: dict[ObjKey, int] = {}
        self._list_due: float | None = None  # when to list what exists; None: not needed
        self.available: bool | None = None  # unknown until the first listing
        self.written: dict[ObjKey, Written] = {}
        self.counts = WriteCounts()
        self._next_write = 0.0
        self._failing = 0  # consecutive failed calls: how often to log
        self.thread = threading.Thread(target=self.run, name="reports", daemon=True)

    @property
    def target(self) -> reports.ReportApi:
        """The group written to: the one the last listing found served (the first choice before)."""
        return self.using or self.apis[0]

    @property
    def writes(self) -> dict[str, int]:
        return self.counts.as_dict()

    # -- called by the lease and the audit loop --
    def start_leading(self) -> None:
        with self._cond:
            self.leading.set()
            self._list_due = 0.0
            self._cond.notify_all()

    def stop_leading(self) -> None:
        self.leading.clear()

    def resync(self) -> None:
        """List what exists again (every full pass): the reports are compared with the cluster's,
        not with what this writer remembers, so one deleted by hand or lost with its CRD is
        written again within a pass."""
        with self._cond:
            if self._list_due is None:
                self._list_due = 0.0
            self._cond.notify_all()

    def enqueue(self, keys: Iterable[ObjKey]) -> None:
        with self._cond:
            for key in keys:
                self._queue.add(key)
            self._cond.notify_all()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(5)

    # -- the loop --
    def _wait_time(self, now: float) -> float | None:
        """0 when there is work now, else how long until there is (None: until notified)."""
        if self.stopped.is_set():
            return 0.0
        if not self.leading.is_set() or not self.ready.is_set():
            return None
        if self._list_due is not None:
            return max(0.0, self._list_due - now)
        if self.available is False:
            return None
        due = self._queue.next_due()
        return None if due is None else max(0.0, due - now)

    def _next_round(self) -> tuple[bool, list[ObjKey]] | None:
        """Wait for work; then whether to list first, and the keys due. None when stopped."""
        with self._cond:
            while True:
                wait = self._wait_time(time.monotonic())
                if self.stopped.is_set():
                    return None
                if wait == 0.0:
                    break
                self._cond.wait(1.0 if wait is None else min(wait, 1.0))
            now = time.monotonic()
            listing = self._list_due is not None and self._list_due <= now
            if listing:
                self._list_due = None
            return listing, ([] if self.available is False and not listing else self._queue.pop_due(now))

    def run(self) -> None:
        while (work := self._next_round()) is not None:
            listing, keys = work
            if listing and not self._relist():
                continue
            for key in keys:
                if not self.leading.is_set() or self.stopped.is_set():
                    self.enqueue([key])  # written by whoever leads next, or when we lead again
                    continue
                self._reconcile(key)
            self.on_progress()

    def _relist(self) -> bool:
        """List what exists and queue every key that may differ; False when it could not."""
        try:
            keys = self._list()
        except Unavailable:
            if self.available is not False:
                log.info(
                    "no report CRD installed (%s): reports are not written; looking again every %.0fs",
                    " or ".join(f"{a.kind} of {a.api_version}" for a in self.apis),
                    self.retry,
                )
            self.available = False
            self._schedule_list(self.retry)
            self.on_progress()
            return False
        except Exception as e:  # RBAC missing, API server away: list again later, backing off
            self._failed("listing reports", e)
            self._schedule_list(retry_after(self._failing))
            return False
        self._succeeded()
        self.enqueue(keys)
        return True

    def _schedule_list(self, after: float) -> None:
        with self._cond:
            self._list_due = time.monotonic() + after

    def _reconcile(self, key: ObjKey) -> None:
        try:
            self._sync(key)
        except Exception as e:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            self.counts.error += 1
            self._failed(f"writing the report of {'/'.join(k for k in key if k)}", e)
            with self._cond:
                self._queue.add(key, time.monotonic() + retry_after(failures))
        else:
            if self._failures.pop(key, None) is not None or self._failing:
                self._succeeded()

    def _failed(self, what: str, e: Exception) -> None:
        if self._failing == 0 or self._failing % 10 == 0:
            log.warning("%s: %s: %s (retrying with backoff)", what, type(e).__name__, e)
        self._failing += 1

    def _succeeded(self) -> None:
        if self._failing:
            log.info("writing reports again after %d failure(s)", self._failing)
        self._failing = 0

    # -- the API server --
    def _call(self, method: str, path: str, body: Any = None, query: Query | None = None) -> tuple[int, Any]:
        return kubeapi.call(self.api, method, path, body, query)

    def _pace(self) -> None:
        wait = self._next_write - time.monotonic()
        if wait > 0:
            self.stopped.wait(wait)
        self._next_write = max(self._next_write, time.monotonic()) + self.interval

    def _list(self) -> set[ObjKey]:
        """Read every report we own in the first group served; return the keys to look at (ours,
        and every finding). Ours in the other groups are deleted."""
        using, owned = self._first_served()
        listed: dict[ObjKey, Written] = {}
        extra: list[Written] = []
        for item in owned:
            scope = item.get("scope") or {}
            kind = scope.get("kind") or ""
            key = (kind, "" if kind in CLUSTER_SCOPED else scope.get("namespace") or "", scope.get("name") or "")
            written = Written.of(item)
            if key in listed:
                extra.append(written)
            else:
                listed[key] = written
        if self.available is not True or self.using is not using:
            log.info("writing reports as %s (%d of ours exist)", using.api_version, len(listed))
        self.available, self.using, self.written = True, using, listed
        for w in extra:  # a second report for one object
            self._delete(w.namespace, w.name)
        self._delete_elsewhere(using)
        return set(listed) | set(self.tracker.with_findings())

    def _first_served(self) -> tuple[reports.ReportApi, list[dict[str, Any]]]:
        for api in self.apis:
            try:
                return api, self._owned(api)
            except kubeapi.NotServed:
                continue
        raise Unavailable()

    def _owned(self, api: reports.ReportApi) -> list[dict[str, Any]]:
        selector = [("labelSelector", f"{reports.MANAGED_BY}={reports.MANAGER}")]
        items = list(kubeapi.list_items(self.api, api.every(True), selector))
        return items + list(kubeapi.list_items(self.api, api.every(False), selector))

    def _delete_elsewhere(self, using: reports.ReportApi) -> None:
        """Our reports in a group not written to: left over from before a switch of groups."""
        for api in reports.APIS:
            if api is using:
                continue
            try:
                stale = self._owned(api)
                if stale:
                    log.info("deleting %d of our reports in %s: writing to %s", len(stale), api.group, using.group)
                for item in stale:
                    meta = item.get("metadata") or {}
                    self._delete(meta.get("namespace") or "", meta.get("name") or "", api)
            except kubeapi.NotServed:
                continue
            except Exception as e:  # not granted (an older ClusterRole), or failing: never blocks writing
                log.warning("cannot clean up our reports in %s: %s: %s", api.group, type(e).__name__, e)

    def _delete(self, ns: str, name: str, api: reports.ReportApi | None = None) -> None:
        api = api or self.target
        self._pace()
        status, _ = self._call("DELETE", f"{api.collection(ns)}/{name}")
        if status >= 300 and status != 404:
            raise RuntimeError(f"deleting report {ns}/{name}: HTTP {status}")
        self.counts.delete += 1

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
            del self.written[key]
            have = None
        self._pace()
        status, body, op = self._write(self.target.collection(ns), name, desired, have)
        if status == 404:
            # the namespace is gone, or the CRD with every report: list again to know which
            self._schedule_list(0.0)
            return
        if status >= 300:
            raise RuntimeError(f"writing report {ns}/{name}: HTTP {status}: {str(body)[:200]}")
        setattr(self.counts, op, getattr(self.counts, op) + 1)
        self.written[key] = Written.of(body)

    def _write(self, path: str, name: str, desired: dict[str, Any], have: Written | None) -> tuple[int, Any, str]:
        if have is not None:
            desired["metadata"]["resourceVersion"] = have.resource_version
            status, body = self._call("PUT", f"{path}/{name}", desired)
            if status in (404, 409):  # deleted or changed under us: start from what is there
                status, body = self._replace(path, name, desired)
            return status, body, "update"
        status, body = self._call("POST", path, desired)
        if status == 409:  # exists but not known to us (listed before it was made)
            status, body = self._replace(path, name, desired)
            return status, body, "update"
        return status, body, "create"

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
            self.target,
        )
