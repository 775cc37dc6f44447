"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Every replica audits (its metrics are always current, and a failover needs no warm-up), but only
the holder of the Lease writes reports, so two replicas never fight over them.

The algorithm is client-go's: the holder renews every ``retry`` seconds; a candidate takes the
Lease only when its record has not changed for ``duration`` seconds *by the candidate's own
clock* (no comparison of clocks across nodes); every write carries the resourceVersion it read,
so two candidates racing for an expired Lease cannot both win (the loser gets 409). A holder that
cannot renew within ``renew_deadline`` stops writing before anyone else may start. On a clean
stop the holder releases the Lease, so the next one takes over at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from webhook.kube import api as kubeapi

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(spec: dict[str, Any]) -> tuple[Any, ...]:
    """What must change for a holder to count as alive: who holds it, when renewed, how often taken."""
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


class LeaseElector:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.on_started, self.on_stopped = on_started, on_stopped
        self.duration, self.renew_deadline, self.retry = duration, renew_deadline, retry
        self.leading = threading.Event()
        self.stopped = threading.Event()
        self._observed: Any = None  # the last record seen (holder, renewTime, transitions)
        self._observed_at = 0.0  # when it last changed, by our monotonic clock
        self._last_renew = 0.0
        self._last_problem = ""
        self.thread = threading.Thread(target=self.run, name="lease", daemon=True)

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return kubeapi.call(self.api, method, path, body, timeout=(5, 10))

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    # -- one attempt --
    def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the Lease afterwards."""
        status, lease = self._call("GET", f"{self._path}/{self.name}")
        duration = max(1, round(self.duration))
        if status == 404:
            return self._create(duration)
        if status >= 300 or not isinstance(lease, dict):
            raise RuntimeError(f"reading Lease {self.namespace}/{self.name}: HTTP {status}")
        spec: dict[str, Any] = lease.get("spec") or {}
        if _record(spec) != self._observed:
            self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        held_by_other = holder and holder != self.identity
        if held_by_other and time.monotonic() - self._observed_at < float(spec.get("leaseDurationSeconds") or duration):
            return False
        return self._take(lease, spec, holder, duration)

    def _create(self, duration: int) -> bool:
        now = _now()
        first: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": first,
        }
        status, _ = self._call("POST", self._path, body)
        if status == 409:
            return False
        if status >= 300:
            raise RuntimeError(f"creating Lease {self.namespace}/{self.name}: HTTP {status}")
        self._observe(first)
        return True

    def _take(self, lease: dict[str, Any], spec: dict[str, Any], holder: str, duration: int) -> bool:
        """Renew our Lease, or take over one whose holder let it expire (a transition)."""
        now = _now()
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": duration,
            "acquireTime": spec.get("acquireTime") if holder == self.identity else now,
            "renewTime": now,
            "leaseTransitions": transitions if holder == self.identity else transitions + 1,
        }
        lease["spec"] = new_spec
        status, _ = self._call("PUT", f"{self._path}/{self.name}", lease)
        if status == 409:
            return False
        if status >= 300:
            raise RuntimeError(f"updating Lease {self.namespace}/{self.name}: HTTP {status}")
        self._observe(new_spec)
        return True

    def _observe(self, spec: dict[str, Any]) -> None:
        """A record seen changing: the lease duration counts from now, by our clock."""
        self._observed, self._observed_at = _record(spec), time.monotonic()

    # -- loop --
    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                held = self.try_acquire_or_renew()
                if held:
                    self._last_renew = time.monotonic()
                self._last_problem = ""
            except Exception as e:  # API server away, timeouts, RBAC: keep trying, stop leading in time
                problem = f"{type(e).__name__}: {e}"
                if problem != self._last_problem:  # once per distinct problem, not every retry
                    log.warning("lease %s/%s: %s", self.namespace, self.name, problem)
                    self._last_problem = problem
                # still leading until the renew deadline passes: nobody may take over before then
                held = self.leading.is_set() and time.monotonic() - self._last_renew < self.renew_deadline
            if held:
                if not self.leading.is_set():
                    log.info("lease %s/%s: leading as %s", self.namespace, self.name, self.identity)
                    self.leading.set()
                    self.on_started()
            elif self.leading.is_set():
                self._lose("lost the lease")
            self.stopped.wait(self.retry)
        if self.leading.is_set():
            self._lose("stopping")
            self.release()

    def _lose(self, why: str) -> None:
        log.info("lease %s/%s: no longer leading (%s)", self.namespace, self.name, why)
        self.leading.clear()
        self.on_stopped()

    def release(self) -> None:
        """Hand the Lease over at once on a clean stop (client-go's ReleaseOnCancel)."""
        try:
            status, lease = self._call("GET", f"{self._path}/{self.name}")
            if status != 200 or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _now()}
            self._call("PUT", f"{self._path}/{self.name}", lease)
        except Exception as e:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, e)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        if self.thread.is_alive():  # never started when the auditor writes no reports
            self.thread.join(timeout)
