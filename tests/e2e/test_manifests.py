"""manifests/ and certs/: render with kustomize, check the safety properties, and have the real
API server accept the whole install (server-side dry run validates every object and compiles
the CEL matchConditions)."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from testkit.builders import B0
from testkit.harness import Kubectl, rendered_manifests
from testkit.webhook_process import ROOT, Webhook
from webhook.cli.install import WEBHOOK_KINDS
from webhook.core.findings import Policy
from webhook.core.routing import ROUTES

pytestmark = pytest.mark.e2e


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_validating_rules_cover_spec_b0_exactly(kubectl: Kubectl) -> None:
    vwc = by_kind(rendered_manifests(kubectl), "ValidatingWebhookConfiguration")
    seen: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    routes = {r.name: r for r in ROUTES}
    for wh in vwc["webhooks"]:
        assert wh["sideEffects"] == "None" and wh["admissionReviewVersions"] == ["v1"]
        assert wh["timeoutSeconds"] == 5 and wh["matchPolicy"] == "Equivalent"
        assert wh["failurePolicy"] == routes[wh["name"]].failure_policy(Policy())  # docs/rules.md B1
        excluded = wh["namespaceSelector"]["matchExpressions"][0]
        assert excluded["operator"] == "NotIn"
        assert {"kube-system", "kube-node-lease", "waypoint-webhook"} <= set(excluded["values"])
        assert wh["matchConditions"], wh["name"]
        for rule in wh["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    versions, ops = seen.setdefault((group, res), (set(), set()))
                    versions |= set(rule["apiVersions"])
                    ops |= set(rule["operations"])
    assert seen == B0


def test_mutating_webhook_fails_open_and_reinvokes(kubectl: Kubectl) -> None:
    (wh,) = by_kind(rendered_manifests(kubectl), "MutatingWebhookConfiguration")["webhooks"]
    assert wh["failurePolicy"] == "Ignore" and wh["reinvocationPolicy"] == "IfNeeded"
    assert [(r["resources"], r["operations"]) for r in wh["rules"]] == [(["gateways"], ["CREATE", "UPDATE"])]


def test_deployment_is_ha_and_locked_down(kubectl: Kubectl) -> None:
    docs = rendered_manifests(kubectl)
    dep = by_kind(docs, "Deployment")["spec"]
    pod = dep["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["replicas"] == 3 and pod["priorityClassName"] == "system-cluster-critical"
    assert pod["topologySpreadConstraints"] and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] >= 1
    svc = by_kind(docs, "Service")["spec"]["ports"][0]
    assert svc["port"] == 443 and svc["targetPort"] == "https"
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    assert set(roles) == {"waypoint-webhook-view", "waypoint-webhook-audit", "waypoint-webhook-audit-lease"}
    # The view reads; the audit writes only its reports, and its Lease only by name.
    assert all(set(r["verbs"]) == {"get", "list", "watch"} for r in roles["waypoint-webhook-view"]["rules"])
    assert [(r["apiGroups"], r["resources"]) for r in roles["waypoint-webhook-audit"]["rules"]] == [
        (["wgpolicyk8s.io"], ["policyreports", "clusterpolicyreports"]),
        (["openreports.io"], ["reports", "clusterreports"]),
    ]
    lease = roles["waypoint-webhook-audit-lease"]
    assert lease["metadata"]["namespace"] == "waypoint-webhook"
    assert all(
        r["resources"] == ["leases"] and (r.get("resourceNames") or r["verbs"] == ["create"]) for r in lease["rules"]
    )
    assert "--audit" in c["args"]


def test_cert_manager_overlay_injects_ca(kubectl: Kubectl) -> None:
    docs = [d for d in yaml.safe_load_all(kubectl("kustomize", str(ROOT / "certs" / "cert-manager")).stdout) if d]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        ann = by_kind(docs, kind)["metadata"]["annotations"]
        assert ann["cert-manager.io/inject-ca-from"] == "waypoint-webhook/waypoint-webhook-serving"
    cert = next(d for d in docs if d["kind"] == "Certificate" and d["metadata"]["name"] == "waypoint-webhook-serving")
    assert cert["spec"]["secretName"] == "waypoint-webhook-tls"


def _install_tree(tmp_path: Path) -> Path:
    """certs/ and manifests/ as a clone has them (the run-make-certs-first link included)."""
    shutil.copytree(
        ROOT / "certs", tmp_path / "certs", symlinks=True, ignore=shutil.ignore_patterns("dev", "generated")
    )
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    return tmp_path


def _make_certs(tree: Path, namespace: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "-C",
            str(ROOT),
            "certs",
            f"NAMESPACE={namespace}",
            f"CERTS_OUT={tree / 'certs' / 'generated'}",
            f"MANIFESTS={tree / 'manifests'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )


def test_kustomize_before_make_certs_says_what_to_run(kubectl: Kubectl, tmp_path: Path) -> None:
    tree = _install_tree(tmp_path)
    p = kubectl("kustomize", str(tree / "certs"), check=False)
    assert p.returncode != 0 and "run-make-certs-first" in p.stderr, p.stderr


def test_make_certs_in_another_namespace_is_consistent_and_installs(
    kubectl: Kubectl, webhook: Webhook, tmp_path: Path
) -> None:
    """The README's install path for a namespace of the user's choice: `make certs NAMESPACE=x`,
    then `kubectl apply -k certs/` (here a server-side dry run against the real API server)."""
    ns = "mesh-policy"
    tree = _install_tree(tmp_path)
    _make_certs(tree, ns)
    generated = tree / "certs" / "generated"
    assert stat.S_IMODE((generated / "secret.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((generated / "tls.key").stat().st_mode) == 0o600
    docs = [d for d in yaml.safe_load_all(kubectl("kustomize", str(tree / "certs")).stdout) if d]
    assert by_kind(docs, "Namespace")["metadata"]["name"] == ns
    for d in docs:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", *WEBHOOK_KINDS):
            assert d["metadata"]["namespace"] == ns, d["kind"]
    assert [s["namespace"] for s in by_kind(docs, "ClusterRoleBinding")["subjects"]] == [ns]
    secret = by_kind(docs, "Secret")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"waypoint-webhook.{ns}.svc" in sans
    bundle = secret["data"]["ca.crt"]
    for kind in WEBHOOK_KINDS:
        for wh in by_kind(docs, kind)["webhooks"]:
            assert wh["clientConfig"]["service"]["namespace"] == ns and wh["clientConfig"]["caBundle"] == bundle
            excluded = wh["namespaceSelector"]["matchExpressions"][0]["values"]
            assert ns in excluded and "waypoint-webhook" not in excluded, excluded
    assert "namespace: waypoint-webhook" not in yaml.safe_dump_all(docs)
    # Rotation keeps the CA, so the caBundle already in the cluster stays valid.
    ca = (generated / "ca.crt").read_bytes()
    _make_certs(tree, ns)
    assert (generated / "ca.crt").read_bytes() == ca
    kubectl("create", "namespace", ns)  # a dry run cannot create objects in a namespace it only pretends to create
    p = kubectl.apply(docs, "--dry-run=server")
    assert "deployment.apps/waypoint-webhook created (server dry run)" in p.stdout
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/waypoint-webhook" in p.stdout


def test_make_certs_fail_open_installs_the_policies_and_opens_the_webhooks(kubectl: Kubectl, tmp_path: Path) -> None:
    """`make certs FAIL_OPEN=1 NAMESPACE=x`: the validating webhooks at Ignore, the policies and
    bindings excluding x, accepted by the real API server (server-side dry run)."""
    ns = "mesh-open"
    tree = _install_tree(tmp_path)
    _make_certs(tree, ns, "FAIL_OPEN=1")
    docs = [d for d in yaml.safe_load_all(kubectl("kustomize", str(tree / "certs")).stdout) if d]
    (vwc,) = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    assert {w["failurePolicy"] for w in vwc["webhooks"]} == {"Ignore"}
    assert all(w["clientConfig"]["caBundle"] for w in vwc["webhooks"])
    policies = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert len(policies) == len(bindings) >= 5
    for b in bindings:
        (expr,) = b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert ns in expr["values"] and "waypoint-webhook" not in expr["values"], expr
    kubectl("create", "namespace", ns)
    p = kubectl.apply(docs, "--dry-run=server")
    assert "validatingadmissionpolicy.admissionregistration.k8s.io/waypoint-webhook-services created" in p.stdout


def test_hardening_network_policy_is_valid_and_cannot_shut_out_non_pod_sources(
    kubectl: Kubectl, webhook: Webhook
) -> None:
    path = ROOT / "manifests" / "hardening" / "networkpolicy.yaml"
    policy = yaml.safe_load(path.read_text())
    deployment = by_kind(rendered_manifests(kubectl), "Deployment")
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    first = policy["spec"]["ingress"][0]
    assert first["from"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"  # only the pod network is excepted
    ports = [p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert [p["port"] for p in first["ports"]] == ports  # the webhook, and the probe port for kubelet
    prometheus = policy["spec"]["ingress"][1]  # Prometheus reaches /metrics, on the probe port only
    probes = next(p for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"] if p["name"] == "probes")
    assert [p["port"] for p in prometheus["ports"]] == [probes["containerPort"]]
    p = kubectl("apply", "--dry-run=server", "-f", str(path))
    assert "networkpolicy.networking.k8s.io/waypoint-webhook created (server dry run)" in p.stdout
