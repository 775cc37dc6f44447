"""The fail-open overlay on a real kube-apiserver (issue 9, item 6): the generated
ValidatingAdmissionPolicies type-check, agree with the webhook on a table of cases, and still deny
`istio.io/use-waypoint=None` when the webhook is stopped and its configuration fails open.

A control plane of its own: the webhook configuration is removed and replaced along the way."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.controlplane import ControlPlane
from testkit.harness import ROOT, Kubectl, apply_identity, install_crds, probe_denial, running_cluster, wait_until
from testkit.harness import webhook_configs as shipped_configs
from testkit.webhook_process import Webhook, start_webhook
from webhook.core.policies import documents
from webhook.core.routing import ROUTES

pytestmark = pytest.mark.e2e
UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
NS = "agree"
DENIED = re.compile(r"denied (?:the )?request: (\w+):")


def _setup(k: Kubectl) -> None:
    install_crds(k)
    apply_identity(k)
    k("create", "namespace", NS)
    k("label", "namespace", NS, "istio.io/dataplane-mode=ambient")
    # Admitted before any webhook or policy: a problem that an unrelated edit must not block (B1).
    k.apply(service("legacy", {UW: "None"}))


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_cluster(tmp_path_factory.mktemp("fail-open-cp"), setup=_setup) as c:
        yield c


@pytest.fixture(scope="module")
def k(cp: ControlPlane) -> Kubectl:
    return Kubectl(cp.kubeconfig)


@pytest.fixture(scope="module")
def wh(cp: ControlPlane, k: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    w = start_webhook(cp, k, tmp_path_factory.mktemp("fail-open-webhook"))
    yield w
    w.stop()


def service(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"ports": [{"port": 80}], **spec},
    }


def pod(name: str, labels: dict[str, str], owned: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels}
    if owned:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "0f0f0f0f-0000-0000-0000-000000000001",
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c", "image": "x"}]}}


def gateway(name: str, cls: str = "istio-waypoint", labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, listeners: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels or {}, "annotations": annotations or {}}
    mesh = [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {"gatewayClassName": cls, "listeners": listeners if listeners is not None else mesh},
    }


def istio(kind: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"hosts": ["a.example"], "resolution": "STATIC"} if kind == "ServiceEntry" else {"address": "10.1.1.1"}
    )
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": spec,
    }


def authz(name: str, kind: str = "AuthorizationPolicy", **spec: Any) -> dict[str, Any]:
    group = {"AuthorizationPolicy": "security.istio.io/v1", "EnvoyFilter": "networking.istio.io/v1alpha3"}[kind]
    return {"apiVersion": group, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Kubectl], subprocess.CompletedProcess[str]]


def create(obj: dict[str, Any]) -> Callable[[Kubectl], subprocess.CompletedProcess[str]]:
    return lambda k: k.apply(obj, "--dry-run=server", check=False)


def label(*args: str) -> Callable[[Kubectl], subprocess.CompletedProcess[str]]:
    return lambda k: k("label", *args, "--overwrite", "--dry-run=server", check=False)


HTTP = [{"name": "http", "port": 80, "protocol": "HTTP"}]


def unmanaged(gw: dict[str, Any]) -> dict[str, Any]:
    gw["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.0.0.1"}, {"type": "IPAddress", "value": "10.0.0.2"}]
    return gw


CASES = [
    Case("Service use-waypoint=None", create(service("s1", {UW: "None"}))),
    Case("Service use-waypoint=Reviews_WP", create(service("s2", {UW: "Reviews_WP"}))),
    Case("Service use-waypoint empty", create(service("s3", {UW: ""}))),
    Case("Service use-waypoint=none", create(service("s4", {UW: "none"}))),
    Case("Service use-waypoint=reviews.v2 (not found: a warning)", create(service("s5", {UW: "reviews.v2"}))),
    Case("Service use-waypoint-namespace=Bad_NS", create(service("s6", {UW: "wp", UWN: "Bad_NS"}))),
    Case(
        "ExternalName Service use-waypoint=None (R0)",
        create(service("s7", {UW: "None"}, type="ExternalName", externalName="a.example", ports=[])),
    ),
    Case("Pod use-waypoint=None", create(pod("p1", {UW: "None"}))),
    Case("Pod of a controller use-waypoint=None (B1)", create(pod("p2", {UW: "None"}, owned=True))),
    Case(
        "Namespace use-waypoint=None",
        create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1", "labels": {UW: "None"}}}),
    ),
    Case("ServiceEntry use-waypoint=None", create(istio("ServiceEntry", "se1", {UW: "None"}))),
    Case(
        "WorkloadEntry use-waypoint-namespace=Bad.NS", create(istio("WorkloadEntry", "we1", {UW: "wp", UWN: "Bad.NS"}))
    ),
    Case("Gateway waypoint-for=bogus", create(gateway("g1", labels={"istio.io/waypoint-for": "bogus"}))),
    Case("Gateway without an HBONE listener", create(gateway("g2", listeners=HTTP))),
    Case("Gateway of another class without HBONE", create(gateway("g3", cls="other", listeners=HTTP))),
    Case("Gateway named none", create(gateway("none"))),
    Case(
        "Gateway name-override Bad_Name",
        create(gateway("g4", annotations={"gateway.istio.io/name-override": "Bad_Name"})),
    ),
    Case(
        "Gateway name-override with a line break (the denial stays one line, code first)",
        create(gateway("g8", annotations={"gateway.istio.io/name-override": "wp\n"})),
    ),
    Case(
        "Gateway inbound binding PROXY/abc",
        create(gateway("g5", annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/abc"})),
    ),
    Case(
        "Gateway inbound binding PROXY/70000 (above 65535: binds no listener, revision 3)",
        create(gateway("g7", annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/70000"})),
    ),
    Case(
        "Gateway of 64 characters with a valid name-override (W2 label values, revision 3)",
        create(gateway("w" * 64, annotations={"gateway.istio.io/name-override": "wp"})),
    ),
    Case(
        "unmanaged Gateway (two addresses) with a dotted name (W2, revision 3)",
        create(unmanaged(gateway("reviews.v2"))),
    ),
    Case(
        "Gateway inbound binding PROXY/15088",
        create(gateway("g6", annotations={"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"})),
    ),
    Case(
        "GatewayClass waypoint-for=Service",
        create(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": "gc1", "labels": {"istio.io/waypoint-for": "Service"}},
                "spec": {"controllerName": "istio.io/mesh-controller"},
            }
        ),
    ),
    Case(
        "AuthorizationPolicy target kind Service of group networking.istio.io (Z1, Z7)",
        create(authz("ap1", targetRefs=[{"group": "networking.istio.io", "kind": "Service", "name": "s"}])),
    ),
    Case(
        "AuthorizationPolicy target a Deployment (Z1)",
        create(authz("ap2", targetRefs=[{"group": "apps", "kind": "Deployment", "name": "d"}])),
    ),
    Case(
        "AuthorizationPolicy target an unbound Service (a warning: cluster state never denies a policy)",
        create(authz("ap3", targetRefs=[{"group": "", "kind": "Service", "name": "legacy"}], action="DENY")),
    ),
    Case(
        "EnvoyFilter target a Service (Z12)",
        create(authz("ef1", "EnvoyFilter", targetRefs=[{"group": "", "kind": "Service", "name": "s"}])),
    ),
    Case("unrelated edit of a Service with a pre-existing None (B1)", label("service", "legacy", "-n", NS, "app=x")),
    Case("changing that None to NONE", label("service", "legacy", "-n", NS, f"{UW}=NONE")),
    Case("kubectl label ns use-waypoint=None", label("namespace", NS, f"{UW}=None")),
    Case("kubectl label ns use-waypoint=wp", label("namespace", NS, f"{UW}=wp")),
]


def outcome(p: subprocess.CompletedProcess[str]) -> str:
    """'allowed', or the code of the denial."""
    if p.returncode == 0:
        return "allowed"
    m = DENIED.search(p.stderr)
    return m.group(1) if m else f"error: {p.stderr.strip()[:200]}"


def run_table(k: Kubectl) -> dict[str, str]:
    return {c.name: outcome(c.run(k)) for c in CASES}


def validating_only(k: Kubectl, wh: Webhook) -> list[dict[str, Any]]:
    port = int(wh.url.rsplit(":", 1)[1])
    return [d for d in shipped_configs(k, port, wh.ca.read_bytes()) if d["kind"] == "ValidatingWebhookConfiguration"]


def fail_open_configs(k: Kubectl, wh: Webhook, tmp: Path) -> list[dict[str, Any]]:
    """The fail-open install as kustomize renders it (base + component), its webhooks pointed at
    the webhook's loopback URL."""
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "manifests", tmp)],
                "components": [os.path.relpath(ROOT / "manifests" / "fail-open", tmp)],
            }
        )
    )
    rendered = [d for d in yaml.safe_load_all(k("kustomize", str(tmp)).stdout) if d]
    by_url = {d["metadata"]["name"] + d["kind"]: d for d in validating_only(k, wh)}
    out = []
    for d in rendered:
        if d["kind"] == "ValidatingWebhookConfiguration":
            urls = {w["name"]: w["clientConfig"] for w in by_url[d["metadata"]["name"] + d["kind"]]["webhooks"]}
            for w in d["webhooks"]:
                w["clientConfig"] = urls[w["name"]]
            out.append(d)
        elif d["kind"].startswith("ValidatingAdmissionPolicy"):
            out.append(d)
    return out


# One case each policy denies: each policy and binding takes effect on its own, asynchronously.
PROBES = (
    "Service use-waypoint=None",
    "Pod use-waypoint=None",
    "Namespace use-waypoint=None",
    "ServiceEntry use-waypoint=None",
    "WorkloadEntry use-waypoint-namespace=Bad.NS",
    "Gateway waypoint-for=bogus",
    "GatewayClass waypoint-for=Service",
    "AuthorizationPolicy target a Deployment (Z1)",
)


def policies_ready(k: Kubectl) -> None:
    """Every binding in effect. (Type checking reports into the policies' status from
    kube-controller-manager, which this control plane does not run: an expression that failed at
    run time would show in the table as an error, which fails the test.)"""
    cases = {c.name: c for c in CASES}
    assert set(PROBES) <= set(cases)
    for name in PROBES:
        case = cases[name]

        def denied(case: Case = case) -> bool:
            return outcome(case.run(k)) != "allowed"

        wait_until(denied, 60, f"the policy for {name!r}", 0.5)


def test_policy_agrees_with_the_webhook_and_holds_when_the_webhook_is_down(
    k: Kubectl, wh: Webhook, tmp_path: Path
) -> None:
    # 1. The webhook alone (its validating configuration, as shipped).
    k.apply(validating_only(k, wh))
    probe_denial(k)
    by_webhook = run_table(k)
    # What it takes state to know stays the webhook's: a Pod named after a Gateway that does not
    # exist is denied by the webhook (R0 needs the Gateway), let through by the policy.
    instance = create(pod("gw-pod", {UW: "None", "gateway.networking.k8s.io/gateway-name": "ghost"}))
    assert outcome(instance(k)) == "InvalidUseWaypoint"

    # 2. The policies alone: the webhook unregistered and stopped.
    k("delete", "validatingwebhookconfiguration", "waypoint-webhook")
    wh.stop()
    k.apply([d for d in documents() if d["kind"].startswith("ValidatingAdmissionPolicy")])
    policies_ready(k)
    by_policy = run_table(k)
    assert outcome(instance(k)) == "allowed"

    assert by_policy == by_webhook, {
        c: (by_webhook[c], by_policy[c]) for c in by_webhook if by_webhook[c] != by_policy[c]
    }
    assert {v for v in by_webhook.values() if v != "allowed"} == {
        "InvalidUseWaypoint", "InvalidUseWaypointNamespace", "InvalidWaypointFor", "MissingMeshListener",
        "InvalidWaypointName", "InvalidInboundBinding", "InvalidPolicyTarget",
    }, by_webhook  # fmt: skip
    assert not any(v.startswith("error") for v in by_webhook.values()), by_webhook

    # 3. The fail-open install with the webhook down: the typo is still denied, by the policy,
    # with the code in the message; a valid label goes through unjudged.
    k.apply(fail_open_configs(k, wh, tmp_path))
    failing = [
        w["failurePolicy"]
        for w in json.loads(k("get", "validatingwebhookconfiguration", "waypoint-webhook", "-o", "json").stdout)[
            "webhooks"
        ]
    ]
    assert failing == ["Ignore"] * len(ROUTES)
    typo = k("label", "namespace", NS, f"{UW}=None", check=False)
    assert typo.returncode != 0, typo.stdout
    assert "ValidatingAdmissionPolicy 'waypoint-webhook-namespaces'" in typo.stderr, typo.stderr
    assert "denied request: InvalidUseWaypoint: use-waypoint 'None' is not a waypoint name" in typo.stderr
    k("label", "namespace", NS, f"{UW}=wp")  # the webhook is down and fails open
