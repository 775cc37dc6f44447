"""Tools the tests run as users do (helm, promtool), each built once from the Go module proxy by
its build script and cached outside the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def built(script: str) -> Path:
    """The binary a build script (path relative to the repository) prints on its last line."""
    out = subprocess.run([str(ROOT / script)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])
