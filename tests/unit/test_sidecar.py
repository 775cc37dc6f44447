"""The auditor beside the workers: the gunicorn master restarts it when it dies and stops it when
the master exits (webhook.admission.serving.Sidecar)."""

from __future__ import annotations

import os
import sys

from testkit.harness import wait_until
from webhook.admission.serving import Sidecar

CHILD = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_a_dead_sidecar_is_restarted_and_stop_terminates_it() -> None:
    car = Sidecar(CHILD, dict(os.environ), grace=5)
    car.start()
    try:
        first = wait_until(lambda: car.proc and car.proc.pid, 10, "the sidecar")
        assert car.proc is not None
        car.proc.kill()
        second = wait_until(
            lambda: car.proc and car.proc.poll() is None and car.proc.pid != first and car.proc.pid,
            10,
            "a restarted sidecar",
        )
        assert second != first
    finally:
        car.stop()
    assert car.proc is not None and car.proc.poll() is not None
    car.thread.join(5)
    assert not car.thread.is_alive(), "no restart after stop"
