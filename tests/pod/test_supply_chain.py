"""The image as a supply chain (issue 21 item 5), built the way ``make image`` and ``make sbom``
build it: OCI labels with the version and the revision, ``waypoint-webhook --version`` inside the
image printing the same, and the CycloneDX SBOM of the installed environment listing exactly the
locked runtime dependencies and nothing the build needed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from tests.pod import image as images
from tests.pod.container import MEASURED
from tests.unit.test_supply_chain import BUILD_ONLY, LOCK, PYPROJECT

pytestmark = pytest.mark.pod


def test_labels_and_version_name_the_same_build(podman_env: dict[str, str], built_image: str) -> None:
    labels = images.labels(podman_env, built_image)
    revision = images.git_revision()
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    oci = {
        k.removeprefix("org.opencontainers.image."): v for k, v in labels.items() if k.startswith("org.opencontainers")
    }
    assert oci["version"] == PYPROJECT["version"] and oci["revision"] == revision, oci
    assert oci["source"] == PYPROJECT["urls"]["Source"] and oci["licenses"] == PYPROJECT["license"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", oci["created"]), oci
    # As the Deployment runs it: its user, a read-only root filesystem, no network.
    p = images.podman(
        podman_env, "run", "--rm", "--read-only", "--network=none", "--user=65532:65532", built_image, "--version"
    )
    assert p.stdout.strip() == f"waypoint-webhook {PYPROJECT['version']} (revision {revision})", p.stdout


def components(sbom: dict[str, Any]) -> dict[str, str]:
    return {canonicalize_name(c["name"]): c.get("version", "") for c in sbom.get("components", [])}


def test_the_sbom_lists_the_locked_runtime_and_nothing_else(
    podman_env: dict[str, str], built_image: str, tmp_path: Path
) -> None:
    path = images.build_sbom(podman_env, tmp_path / "sbom")
    sbom = json.loads(path.read_text())
    MEASURED["SBOM components"] = str(len(sbom.get("components", [])))
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"].startswith("1.")
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == ("waypoint-webhook", PYPROJECT["version"], "application")
    listed = components(sbom)
    listed.pop("waypoint-webhook", None)  # the project itself, when the tool lists it beside the root
    runtime = {name: version for name, (version, _) in LOCK.items() if name not in BUILD_ONLY}
    assert listed == runtime, {
        "missing": sorted(set(runtime) - set(listed)),
        "unexpected": sorted(set(listed) - set(runtime)),
        "other version": sorted(n for n in set(runtime) & set(listed) if runtime[n] != listed[n]),
    }
    assert not {"pip", "setuptools", "wheel"} & set(listed), "the image holds no installer or build backend"
    for c in sbom["components"]:  # each one identifiable by scanners: its package URL
        purl = f"pkg:pypi/{canonicalize_name(c['name'])}@{c.get('version')}"
        assert c.get("purl") == purl or c["name"] == "waypoint-webhook", c
