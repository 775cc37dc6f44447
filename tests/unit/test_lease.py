"""Leader election (webhook.audit.lease) against an in-memory Lease API with resourceVersions: one
holder at a time, a takeover only after the holder's record stops changing for the lease
duration (or at once after a release), and a refused Lease logged once, not at every retry."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from testkit.fakeapi import Call, Raw
from testkit.harness import wait_until
from webhook.audit.lease import LeaseElector


@dataclass
class FakeLeases:
    """The coordination.k8s.io Lease endpoints, with optimistic concurrency; or 403 for everything."""

    forbidden: bool = False
    lease: dict[str, Any] | None = None
    version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def param_serialize(self, method: str, path: str, body: Any = None, **_: Any) -> tuple[Any, ...]:
        return method, path, None, body, None

    def call_api(self, method: str, path: str, headers: Any, body: Any, post: Any, **_: Any) -> Call:
        with self.lock:
            return Call(self._handle(method, body))

    def _handle(self, method: str, body: Any) -> Raw:
        if self.forbidden:
            return Raw(403, b'{"reason": "Forbidden"}')
        if method == "GET":
            return Raw(200, json.dumps(self.lease).encode()) if self.lease else Raw(404, b"{}")
        if method == "POST":
            if self.lease:
                return Raw(409, b"{}")
        elif body["metadata"].get("resourceVersion") != str(self.version):
            return Raw(409, b"{}")
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return Raw(200, json.dumps(self.lease).encode())


def elector(api: FakeLeases, identity: str, events: list[str], duration: float = 1.0) -> LeaseElector:
    return LeaseElector(
        api, "ns", "audit", identity,
        lambda: events.append(f"{identity} leads"), lambda: events.append(f"{identity} stops"),
        duration=duration, renew_deadline=0.6, retry=0.05,
    )  # fmt: skip


def test_one_holder_and_a_takeover_after_release() -> None:
    api, events = FakeLeases(), list[str]()
    a, b = elector(api, "a", events), elector(api, "b", events)
    a.start()
    wait_until(a.leading.is_set, 5, "a to lead")
    b.start()
    time.sleep(1.5)  # longer than the lease duration: a keeps renewing, so b never takes over
    assert not b.leading.is_set() and events == ["a leads"]
    a.stop()  # releases: b takes over without waiting for the lease to expire
    wait_until(b.leading.is_set, 5, "b to lead")
    assert events == ["a leads", "a stops", "b leads"]
    b.stop()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == ""


def test_an_abandoned_lease_is_taken_after_its_duration() -> None:
    api, events = FakeLeases(), list[str]()
    a = elector(api, "a", events)
    assert a.try_acquire_or_renew()  # a leads once, then vanishes without releasing
    b = elector(api, "b", events)
    started = time.monotonic()
    b.start()
    wait_until(b.leading.is_set, 5, "b to take the abandoned lease")
    assert time.monotonic() - started >= 1.0  # b's own clock saw the record unchanged for the duration
    b.stop()


def test_a_forbidden_lease_is_logged_once_and_never_led(caplog: pytest.LogCaptureFixture) -> None:
    api, events = FakeLeases(forbidden=True), list[str]()
    a = elector(api, "a", events)
    with caplog.at_level(logging.WARNING, logger="webhook.audit.lease"):
        a.start()
        time.sleep(0.5)  # about ten retries
        a.stop()
    assert events == [] and not a.leading.is_set()
    assert len([r for r in caplog.records if "HTTP 403" in r.getMessage()]) == 1
