"""Kyverno as a peer in ``make bench-peers``: its admission controller built from the Go module
proxy (``github.com/kyverno/kyverno``, cached outside the repository like the control plane) and
run out of cluster against the benchmark's kube-apiserver, with a ClusterPolicy holding the same
stateless rules as the generated ValidatingAdmissionPolicies (their CEL expressions, through
Kyverno's ``validate.cel``), admission reports and background scans off.

Kyverno's go.mod has ``replace`` directives, which apply only when it is built as its own module:
the build copies the module's source out of the module cache and runs ``go build`` inside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from testkit.controlplane import ControlPlane, free_port, spawn
from testkit.crds import KYVERNO_MODULE, module_dir
from testkit.harness import Kubectl

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("WAYPOINT_CACHE", Path.home() / ".cache" / "waypoint-webhook")) / "kyverno"
VERSION = KYVERNO_MODULE.rsplit("@", 1)[1]
KINDS = {"gateways": "Gateway", "gatewayclasses": "GatewayClass", "namespaces": "Namespace", "services": "Service",
         "pods": "Pod", "serviceentries": "ServiceEntry", "workloadentries": "WorkloadEntry"}  # fmt: skip


def build() -> Path:
    """The kyverno binary of KYVERNO_MODULE, built once and cached."""
    exe = CACHE / VERSION / "kyverno"
    if exe.exists():
        return exe
    src = CACHE / VERSION / "src"
    if not src.exists():
        shutil.copytree(module_dir(KYVERNO_MODULE), src)
        subprocess.run(["chmod", "-R", "u+w", str(src)], check=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    part = exe.with_suffix(".part")
    subprocess.run(["go", "build", "-trimpath", "-o", str(part), "./cmd/kyverno"], cwd=src, env=env, check=True)
    part.rename(exe)
    return exe


def _kinds(rule: dict[str, Any]) -> list[str]:
    out = []
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            kind = KINDS[resource]
            out.append(f"{group}/*/{kind}" if group else kind)
    return out


def generated() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each generated ValidatingAdmissionPolicy with its binding's matchResources, for the consumer
    and Gateway kinds (``KINDS``): the policy-target one (A7) judges kinds the benchmark never
    creates, so Kyverno gets the same stateless rules the benchmark exercises."""
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "fail-open" / "policy.yaml").read_text()) if d]
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    return [
        (d, bindings[d["metadata"]["name"]]["spec"]["matchResources"])
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and all(r in KINDS for rule in d["spec"]["matchConstraints"]["resourceRules"] for r in rule["resources"])
    ]


def cluster_policy() -> dict[str, Any]:
    """One rule per generated ValidatingAdmissionPolicy: its kinds, its exclusions, its CEL."""
    rules = []
    for vap, match in generated():
        name = vap["metadata"]["name"]
        excluded = match["namespaceSelector"]["matchExpressions"][0]["values"]
        kinds = [k for r in vap["spec"]["matchConstraints"]["resourceRules"] for k in _kinds(r)]
        ops = sorted({op for r in vap["spec"]["matchConstraints"]["resourceRules"] for op in r["operations"]})
        rules.append(
            {
                "name": name,
                "match": {"any": [{"resources": {"kinds": kinds, "operations": ops}}]},
                "exclude": {"any": [{"resources": {"namespaces": excluded}}]},
                "celPreconditions": [
                    {"name": c["name"], "expression": c["expression"]} for c in vap["spec"].get("matchConditions", [])
                ],
                "validate": {
                    "failureAction": "Enforce",
                    "cel": {
                        "expressions": [
                            {k: v for k, v in e.items() if k in ("expression", "messageExpression", "reason")}
                            for e in vap["spec"]["validations"]
                        ]
                    },
                },
            }
        )
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "waypoint-webhook-stateless"},
        "spec": {"background": False, "admission": True, "rules": rules},
    }


def validating_policies() -> list[dict[str, Any]]:
    """The same policies as Kyverno's CEL-native ValidatingPolicies (policies.kyverno.io/v1): the
    VAPs' constraints, conditions and validations, the bindings' selectors, no background scans."""
    out = []
    for vap, match in generated():
        spec = vap["spec"]
        constraints = {**spec["matchConstraints"], **{k: v for k, v in match.items() if k.endswith("Selector")}}
        out.append(
            {
                "apiVersion": "policies.kyverno.io/v1",
                "kind": "ValidatingPolicy",
                "metadata": {"name": vap["metadata"]["name"]},
                "spec": {
                    "failurePolicy": spec.get("failurePolicy", "Fail"),
                    "validationActions": ["Deny"],
                    "matchConstraints": constraints,
                    "matchConditions": spec.get("matchConditions", []),
                    "validations": spec["validations"],
                    "evaluation": {"background": {"enabled": False}},
                    "autogen": {"podControllers": {"controllers": []}},
                },
            }
        )
    return out


def policies(style: str) -> list[dict[str, Any]]:
    """``clusterpolicy`` (kyverno.io/v1, validate.cel) or ``validatingpolicy`` (policies.kyverno.io/v1)."""
    return [cluster_policy()] if style == "clusterpolicy" else validating_policies()


def install(k: Kubectl) -> None:
    """Kyverno's CRDs (v1 policies, the CEL policies, its reports), its namespace and ConfigMaps."""
    base = module_dir(KYVERNO_MODULE) / "config" / "crds"
    for d in ("kyverno", "policies.kyverno.io", "reports", "policyreport"):
        for f in sorted((base / d).glob("*.yaml")):
            k("apply", "--server-side", "-f", str(f))
    k("wait", "--for=condition=Established", "--timeout=60s", "crd/clusterpolicies.kyverno.io")
    k("create", "namespace", "kyverno", check=False)
    for cm in ("kyverno", "kyverno-metrics"):
        k("create", "configmap", cm, "-n", "kyverno", check=False)


@contextmanager
def running(
    cp: ControlPlane, k: Kubectl, exe: Path, work: Path, style: str = "clusterpolicy", cpu: str = "1"
) -> Iterator[None]:
    """Kyverno serving on 127.0.0.1 with its policy in force (its own webhook registration)."""
    port = free_port()
    env = {**os.environ, "KYVERNO_NAMESPACE": "kyverno", "KYVERNO_POD_NAME": "kyverno-bench",
           "KYVERNO_DEPLOYMENT": "kyverno", "KYVERNO_SERVICEACCOUNT_NAME": "kyverno", "INIT_CONFIG": "kyverno",
           "METRICS_CONFIG": "kyverno-metrics", "KYVERNO_SVC": "kyverno-svc"}  # fmt: skip
    args = ["taskset", "-c", cpu, str(exe), f"--kubeconfig={cp.kubeconfig}", f"--serverIP=127.0.0.1:{port}",
            f"--webhookServerPort={port}", "--webhookServerHost=127.0.0.1", "--admissionReports=false",
            "--omitEvents=PolicyApplied,PolicyViolation,PolicyError,PolicySkipped", "--v=1",
            "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca", "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair"]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    log = work / "kyverno.log"
    docs = policies(style)
    proc = spawn(args, log.open("wb"), env=env)
    try:
        k.apply(docs)
        yield
    finally:
        for d in docs:
            k(
                "delete",
                d["kind"].lower() + "." + d["apiVersion"].split("/")[0],
                d["metadata"]["name"],
                "--ignore-not-found",
                check=False,
            )
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        k("delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", "-l",
          "webhook.kyverno.io/managed-by=kyverno", "--ignore-not-found", check=False)  # fmt: skip
        time.sleep(1)
