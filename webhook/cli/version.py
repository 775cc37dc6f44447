"""``--version``: the package's version and the source revision it was built from.

The revision comes from ``REVISION`` beside this module when a build wrote one (the image does),
else from git when running from a checkout, else it is ``unknown``: never a guess.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import webhook

HERE = Path(__file__).resolve().parent


def version() -> str:
    try:
        return metadata.version("waypoint-webhook")
    except metadata.PackageNotFoundError:
        return webhook.__version__


def revision() -> str:
    stamped = HERE / "REVISION"
    if stamped.is_file():
        return stamped.read_text(encoding="utf-8").strip() or "unknown"
    checkout = HERE.parents[1]
    if not (checkout / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def describe() -> str:
    return f"waypoint-webhook {version()} (revision {revision()})"
