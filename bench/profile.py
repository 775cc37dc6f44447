"""Where the webhook's time goes under the API server's real traffic (issue 22 item 2).

py-spy samples the webhook's whole process tree (the gunicorn arbiter and its workers, not idle
threads) while the API server calls it for a steady stream of creates; the samples become a flame
graph (SVG) and a table of inclusive shares by stage of the request path. The profile runs in a
pass of its own, after the measured rounds, so the sampler never disturbs a reported figure; the
sampler runs on the API server's core (CPU 0), not on the webhook's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# Stages of the request path, by the first frame (from the leaf up) whose file matches: the most
# specific first, so that the rules' time inside a Flask view counts as the rules'.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rules and cluster view (webhook/core)", ("webhook/core/",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("logging", ("logging/",)),
    ("JSON encode/decode", ("json/", "orjson")),
    ("admission shell (webhook/admission)", ("webhook/admission/",)),
    ("Flask/Werkzeug request machinery", ("flask/", "werkzeug/")),
    ("TLS and sockets (ssl, socket)", ("(ssl.py:", "(socket.py:")),
    ("waiting for I/O (selectors, epoll)", ("(selectors.py:",)),
    ("gunicorn worker loop", ("gunicorn/",)),
    ("watch and audit threads (kubernetes client, urllib3, webhook/cluster, webhook/audit)",
     ("kubernetes/", "urllib3/", "webhook/cluster/", "webhook/audit/")),
)  # fmt: skip
# py-spy names a frame ``function (path:line)`` with the path relative to its sys.path entry.
OTHER = "other (interpreter, threading, gc)"


def pyspy() -> str:
    """py-spy from the project's virtualenv (a dev dependency), else from PATH."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: make install adds it (dev dependency)")
    return found


def record(pid: int, seconds: int, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` and its children; the caller drives the load and then waits."""
    cmd = ["taskset", "-c", "0", pyspy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
           "--rate", "250", "--duration", str(seconds), "--format", fmt, "--output", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass(frozen=True)
class Profile:
    samples: int
    stages: list[tuple[str, float]]  # (stage, share of samples), largest first
    leaves: list[tuple[str, float]]  # (function at the leaf, share), the largest 12

    def markdown(self) -> str:
        rows = ["| stage (inclusive, by innermost matching frame) | share of samples |", "|---|---|"]
        rows += [f"| {s} | {100 * x:.1f} % |" for s, x in self.stages]
        rows += ["", "| leaf function (self time) | share |", "|---|---|"]
        rows += [f"| `{f}` | {100 * x:.1f} % |" for f, x in self.leaves]
        return "\n".join([f"{self.samples} samples", "", *rows])


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return OTHER


def summarise(lines: Iterable[str], stage: Callable[[list[str]], str] = stage_of) -> Profile:
    """py-spy's raw (collapsed) format: ``frame;frame;…;leaf count`` per distinct stack."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        stages[stage(frames)] += int(count)
        leaves[frames[-1]] += int(count)
    total = sum(stages.values()) or 1
    return Profile(
        sum(stages.values()),
        [(s, n / total) for s, n in stages.most_common()],
        [(f, n / total) for f, n in leaves.most_common(12)],
    )
