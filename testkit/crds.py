"""The CRDs the tests install, fetched at test time through the Go module proxy.

Nothing is copied into the project: ``go mod download`` puts each module in the Go module cache
(``$GOMODCACHE``, outside the repository), where later runs find it without the network.

- Gateway API: ``sigs.k8s.io/gateway-api@v1.6.3``, ``config/crd/standard/`` (what istiod 1.31 is
  built with and clusters running it carry: GatewayClass, Gateway, ListenerSet, the routes, and
  the bundled safe-upgrades ValidatingAdmissionPolicy, which refuses older bundles over it); and
  ``@v1.3.0``, the seed's, for one run of its workflows on a cluster of their own.
- Istio: ``istio.io/api@v1.31.4``, ``kubernetes/customresourcedefinitions.gen.yaml`` (every
  Istio CRD; the tests install ServiceEntry and WorkloadEntry).
- Kyverno: ``github.com/kyverno/kyverno@v1.19.1``, ``config/crds/policyreport/`` (the
  ``wgpolicyk8s.io/v1alpha2`` PolicyReport and ClusterPolicyReport the audit writes).
- OpenReports: ``github.com/openreports/reports-api@v0.2.1`` (the version Kyverno v1.19.1
  requires), ``config/crd/`` (the ``openreports.io/v1alpha1`` Report and ClusterReport).
- Prometheus Operator: ``github.com/prometheus-operator/prometheus-operator@v0.89.0``,
  ``example/prometheus-operator-crd/`` (PodMonitor, ServiceMonitor, PrometheusRule: the API server
  validates the chart's monitoring objects against them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api@v1.6.3"
SEED_GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api@v1.3.0"
ISTIO_API_MODULE = "istio.io/api@v1.31.4"
KYVERNO_MODULE = "github.com/kyverno/kyverno@v1.19.1"
OPENREPORTS_MODULE = "github.com/openreports/reports-api@v0.2.1"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator@v0.89.0"
MONITORING_CRDS = ("podmonitors", "servicemonitors", "prometheusrules")


class ModuleUnavailable(RuntimeError):
    """The Go toolchain or the module proxy could not provide a module."""


@cache
def module_dir(module: str) -> Path:
    """Download ``module`` (path@version) into the Go module cache and return its directory."""
    if shutil.which("go") is None:
        raise ModuleUnavailable(f"the tests need Go to fetch {module} through the Go module proxy; install Go")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    p = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, env=env)
    try:
        info = json.loads(p.stdout)
    except json.JSONDecodeError:
        info = {}
    if p.returncode != 0 or "Dir" not in info:
        raise ModuleUnavailable(f"go mod download {module} failed: {info.get('Error') or p.stderr.strip()}")
    return Path(info["Dir"])


def gateway_api_files(module: str = GATEWAY_API_MODULE) -> tuple[Path, ...]:
    d = module_dir(module) / "config" / "crd" / "standard"
    files = tuple(sorted(d.glob("gateway.networking.k8s.io_*.yaml")))
    if not files:
        raise ModuleUnavailable(f"{module} has no CRDs under config/crd/standard/")
    return files


def istio_crds_file() -> Path:
    return module_dir(ISTIO_API_MODULE) / "kubernetes" / "customresourcedefinitions.gen.yaml"


def crd_documents(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in paths:
        docs += [d for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


def istio_crds(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The named Istio CRDs (e.g. ``serviceentries.networking.istio.io``)."""
    docs = [d for d in crd_documents((istio_crds_file(),)) if d["metadata"]["name"] in names]
    missing = set(names) - {d["metadata"]["name"] for d in docs}
    if missing:
        raise ModuleUnavailable(f"{ISTIO_API_MODULE} lacks {sorted(missing)}")
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


def policy_report_files() -> tuple[Path, ...]:
    d = module_dir(KYVERNO_MODULE) / "config" / "crds" / "policyreport"
    files = tuple(sorted(d.glob("wgpolicyk8s.io_*.yaml")))
    if len(files) != 2:
        raise ModuleUnavailable(f"{KYVERNO_MODULE} lacks the two report CRDs under config/crds/policyreport/")
    return files


def openreports_files() -> tuple[Path, ...]:
    d = module_dir(OPENREPORTS_MODULE) / "config" / "crd"
    files = tuple(sorted(d.glob("openreports.io_*.yaml")))
    if len(files) != 2:
        raise ModuleUnavailable(f"{OPENREPORTS_MODULE} lacks the two report CRDs under config/crd/")
    return files


def monitoring_crd_files() -> tuple[Path, ...]:
    d = module_dir(PROMETHEUS_OPERATOR_MODULE) / "example" / "prometheus-operator-crd"
    files = tuple(d / f"monitoring.coreos.com_{name}.yaml" for name in MONITORING_CRDS)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModuleUnavailable(f"{PROMETHEUS_OPERATOR_MODULE} lacks {missing}")
    return files


@cache
def report_schema(kind: str) -> dict[str, Any]:
    """The schema of PolicyReport or ClusterPolicyReport (wgpolicyk8s.io/v1alpha2), or of Report or
    ClusterReport (openreports.io/v1alpha1)."""
    for crd in crd_documents(policy_report_files() + openreports_files()):
        if crd["spec"]["names"]["kind"] == kind:
            (v,) = [v for v in crd["spec"]["versions"] if v["name"] in ("v1alpha2", "v1alpha1")]
            s: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return s
    raise LookupError(f"no CRD schema for {kind}")
