"""Build the image from the project's Dockerfile with podman, on a base made from Debian packages.

No container registry is reachable from the machines this runs on, so the ``BASE`` build
argument (the public slim Python image for users) points at a local base: ``mmdebstrap`` makes a
minimal Debian root with python3 from the host's own apt sources, ``podman import`` turns it into
an image. The tarball is cached outside the repository, keyed by what goes into it.

podman settings that work on these machines (and are harmless elsewhere): the ``runc`` runtime,
ulimits no higher than the host's hard limits (the sandbox has no CAP_SYS_RESOURCE, so a runtime
that tries to raise them fails), ``--pull=never``, and the host's CA bundle mounted into the
build so pip can verify the package index it reaches.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import ssl
import subprocess
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WAYPOINT_CACHE", Path.home() / ".cache" / "waypoint-webhook"))
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
IMAGE = "localhost/waypoint-webhook:pod-tier"
TOOLS = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}


class PodmanUnavailable(RuntimeError):
    """The pod tier cannot run here; it fails (never skips) with this message."""


def require_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise PodmanUnavailable(
            f"the pod tier needs {', '.join(missing)}: apt-get install {' '.join(missing)} (see README, Prerequisites)"
        )


def podman_env(workdir: Path) -> dict[str, str]:
    """Environment for every podman call: a containers.conf of our own (``CONTAINERS_CONF``)."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    conf = workdir / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise PodmanUnavailable(f"podman {' '.join(args[:3])}… failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def _apt_sources() -> Path:
    if SOURCES.exists():
        return SOURCES
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists() and legacy.read_text().strip():
        return legacy
    raise PodmanUnavailable("no apt sources on this machine to build the Debian base image from")


def base_image(env: dict[str, str]) -> str:
    """A local base image with python3 and venv, made from Debian packages (cached)."""
    sources = _apt_sources()
    key = hashlib.sha256("\n".join([SUITE, *PACKAGES, *EXCLUDES, sources.read_text()]).encode()).hexdigest()[:12]
    tag = f"localhost/waypoint-webhook-base:{SUITE}-{key}"
    if podman(env, "image", "exists", tag, check=False).returncode == 0:
        return tag
    tar = CACHE / "image-base" / f"{SUITE}-{key}.tar"
    if not tar.exists():
        tar.parent.mkdir(parents=True, exist_ok=True)
        part = tar.with_suffix(".part")
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            "--format=tar",
            f"--include={','.join(PACKAGES)}",
            "--mode=root",
            "--quiet",
            *(f"--dpkgopt=path-exclude={x}" for x in EXCLUDES),
            SUITE,
            str(part),
            str(sources),
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise PodmanUnavailable(f"mmdebstrap failed ({p.returncode}):\n{p.stderr[-3000:]}")
        part.rename(tar)  # only a complete tarball is ever cached
    podman(env, "import", "--change", 'CMD=["python3"]', str(tar), tag)
    return tag


def host_ca_bundle() -> Path | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def git_revision() -> str:
    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


def _build_args(env: dict[str, str]) -> list[str]:
    """What ``make image`` passes (version, revision, date), on the local base, with the host's CA
    bundle and package index for pip."""
    base = base_image(env)
    args = ["build", "--pull=never", "--network=host", "--build-arg", f"BASE={base}"]
    args += ["--build-arg", f"VERSION={project_version()}", "--build-arg", f"REVISION={git_revision()}"]
    args += ["--build-arg", f"CREATED={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]
    ca = host_ca_bundle()
    if ca is not None:
        args += ["--volume", f"{ca}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    if os.environ.get("PIP_INDEX_URL"):
        args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    return args


def build(env: dict[str, str]) -> str:
    """``podman build`` of the project's Dockerfile on the local base; returns the image tag."""
    require_tools()
    podman(env, *_build_args(env), "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout=1200)
    return IMAGE


def build_sbom(env: dict[str, str], out: Path) -> Path:
    """``make sbom``: the Dockerfile's sbom stage, written to ``out``; returns the SBOM's path."""
    args = [*_build_args(env), "--target", "sbom", "--output", f"type=local,dest={out}"]
    podman(env, *args, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout=1200)
    return out / "waypoint-webhook.cdx.json"


def labels(env: dict[str, str], image: str) -> dict[str, str]:
    got: dict[str, str] = json.loads(podman(env, "image", "inspect", "--format", "{{json .Labels}}", image).stdout)
    return got


def size_bytes(env: dict[str, str], image: str) -> int:
    return int(podman(env, "image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
