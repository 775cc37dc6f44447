"""Locate the CRDs used as test data: ``../shared/crds/`` beside the clone, or the Go module
``sigs.k8s.io/gateway-api@v1.3.0`` through the Go module proxy. Never copied into the project."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WAYPOINT_SHARED", ROOT.parent / "shared"))
GATEWAY_API = SHARED / "crds" / "gateway-api-v1.3.0-standard-install.yaml"
ISTIO = SHARED / "crds" / "istio-1.30.3-crds.yaml"
SEED = SHARED / "seed"


def _gateway_api_from_go() -> list[Path]:
    out = subprocess.run(
        ["go", "mod", "download", "-json", "sigs.k8s.io/gateway-api@v1.3.0"],
        capture_output=True, text=True, check=True, env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    d = Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"
    return sorted(d.glob("gateway.networking.k8s.io_*.yaml"))


@cache
def gateway_api_files() -> tuple[Path, ...]:
    return (GATEWAY_API,) if GATEWAY_API.exists() else tuple(_gateway_api_from_go())


def crd_documents(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in paths:
        docs += [d for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


@cache
def schema(kind: str, version: str = "v1") -> dict[str, Any]:
    for crd in crd_documents(gateway_api_files()):
        if crd["spec"]["names"]["kind"] == kind:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    s: dict[str, Any] = v["schema"]["openAPIV3Schema"]
                    return s
    raise LookupError(f"no CRD schema for {kind} {version}")
