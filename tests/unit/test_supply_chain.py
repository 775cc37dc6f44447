"""The image's inputs agree with each other (issue 21 item 5), without the network: the lock pins
every runtime dependency of pyproject.toml with hashes, the development environment the tests run
in holds exactly those versions, and the Dockerfile's labels say what pyproject.toml and the chart
say. The image built from them, its labels, ``--version`` and SBOM are checked in the pod tier
(tests/pod/test_supply_chain.py)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BUILD_ONLY = {"setuptools", "wheel"}  # in the lock to build the project; uninstalled from the image


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) of a pip-compile --generate-hashes file."""
    out: dict[str, tuple[str, int]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert m, f"{path.name}: not a pinned, hashed requirement: {line[:120]}"
        out[canonicalize_name(m.group(1))] = (m.group(2), m.group(3).count("--hash="))
    return out


LOCK = locked(ROOT / "requirements.lock")


def test_every_pin_has_hashes() -> None:
    for path in (ROOT / "requirements.lock", ROOT / "requirements-sbom.lock"):
        pins = locked(path)
        assert pins and all(n >= 1 for _, n in pins.values()), path.name
    assert "cyclonedx-bom" in locked(ROOT / "requirements-sbom.lock")


def test_the_lock_satisfies_every_runtime_dependency() -> None:
    for spec in PYPROJECT["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in LOCK, f"{req.name} is a dependency but not in requirements.lock: run make lock"
        assert req.specifier.contains(LOCK[name][0], prereleases=True), (
            f"{name}=={LOCK[name][0]} does not satisfy {spec}"
        )
    assert set(LOCK) >= BUILD_ONLY, "the build backend is locked too (the Dockerfile builds without isolation)"


def test_the_tests_run_on_the_locked_versions() -> None:
    """make install installs the lock first: what the tests exercise is what the image ships."""
    drift: dict[str, tuple[str, str | None]] = {}
    for name, (version, _) in LOCK.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift[name] = (version, None)
            continue
        if name not in BUILD_ONLY and installed != version:
            drift[name] = (version, installed)
    assert not drift, f"installed versions differ from requirements.lock (run make install): {drift}"


def dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(.*)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert m, f"the Dockerfile declares no default for {name}"
    return m.group(1)


def label(name: str) -> str:
    m = re.search(rf'org\.opencontainers\.image\.{name}="([^"]*)"', (ROOT / "Dockerfile").read_text())
    assert m, f"no org.opencontainers.image.{name} label"
    return m.group(1)


def test_the_labels_say_what_pyproject_and_the_chart_say() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "waypoint-webhook" / "Chart.yaml").read_text())
    assert dockerfile_arg("VERSION") == PYPROJECT["version"] == chart["appVersion"]
    assert label("version") == "${VERSION}" and label("revision") == "${REVISION}"
    assert label("source") == PYPROJECT["urls"]["Source"] == chart["home"]
    assert label("licenses") == PYPROJECT["license"] == chart["license"]


def test_the_dockerfile_installs_only_from_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        assert "--require-hashes" in line or "--no-deps" in line, line
    assert "--no-build-isolation" in text and "pip check" in text
