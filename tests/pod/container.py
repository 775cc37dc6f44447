"""The shipped image run as the Deployment runs it, and what the pod tier measures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import requests

from testkit.harness import Kubectl
from tests.pod import image as images
from tests.pod.podspec import PodRun

CONTAINER = "waypoint-webhook-pod-tier"
MAX_LIFETIME = 1800  # conmon kills the container after this, even if the test run was killed
MEASURED: dict[str, str] = {}  # figures for the README, printed at the end of the run


@dataclass
class Pod:
    env: dict[str, str]
    run: PodRun
    kubectl: Kubectl
    ca: Path
    started: float  # the container's start, on the time.monotonic() clock
    first_ok: dict[str, float] = field(default_factory=dict)  # probe name -> seconds after start

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.run.port}"

    @property
    def metrics_url(self) -> str:
        """The probe port's /metrics, where Prometheus scrapes the pod."""
        return f"http://127.0.0.1:{self.run.ports['probes']}/metrics"

    def probe(self, name: str) -> requests.Response:
        spec = self.run.probes[name]
        return requests.get(self.run.probe_url(name), verify=False, timeout=spec.get("timeoutSeconds", 1))

    def pid(self) -> int:
        return int(images.podman(self.env, "inspect", "--format", "{{.State.Pid}}", CONTAINER).stdout.strip())

    def logs(self) -> str:
        p = images.podman(self.env, "logs", CONTAINER, check=False)
        return p.stdout + p.stderr
