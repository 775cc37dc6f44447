"""Installs as users render them, applied to a real kube-apiserver with every replica down (issue 19,
items 2, 3 and 5; docs/rules.md B1): an outage blocks exactly what could have been denied, the
webhook never stands between its own Deployment and its pods in any namespace, an existing
namespace is never owned, and the fail-open variant still denies the syntax rules.

Each test's cluster has no nodes and no Service network: the webhook configurations point at a
Service nobody serves, which is what the API server meets when every replica is down. The module
runs on the current Kubernetes and on the oldest one the README's compatibility table claims.
Requests are dry runs (``--dry-run=server`` runs every admission step and stores nothing)."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import builders
from testkit.controlplane import ControlPlane, oldest_assets
from testkit.crds import GATEWAY_API_MODULE, SEED_GATEWAY_API_MODULE
from testkit.harness import EXE, Kubectl, install_crds, running_cluster, wait_until
from testkit.webhook_process import ROOT, start_webhook
from webhook.core.policies import POLICIES

pytestmark = pytest.mark.e2e

SELF = "waypoint-webhook.io/self"
FAILED = "failed calling webhook"


@pytest.fixture(scope="module", params=["current", "oldest"])
def cp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The oldest Kubernetes (1.30) with Gateway API v1.3.0: the CRDs of v1.4 and later use CEL's
    ``isIP``, which 1.30 does not have (README, Compatibility)."""
    oldest = request.param == "oldest"
    bin_dir = oldest_assets() if oldest else None
    crds = SEED_GATEWAY_API_MODULE if oldest else GATEWAY_API_MODULE
    workdir = tmp_path_factory.mktemp(f"install-{request.param}")
    with running_cluster(workdir, lambda k: install_crds(k, crds), bin_dir=bin_dir) as c:
        k = Kubectl(c.kubeconfig)
        k("create", "namespace", "tenant")
        k.apply(gateway("wp", "tenant"))  # before any webhook: it is deleted (dry run) during the outage
        yield c


@pytest.fixture
def k(cp: ControlPlane) -> Iterator[Kubectl]:
    kubectl = Kubectl(cp.kubeconfig)
    yield kubectl
    remove_webhooks(kubectl)


def remove_webhooks(k: Kubectl) -> None:
    k("delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", "waypoint-webhook", "--ignore-not-found")
    names = k("get", "validatingadmissionpolicy,validatingadmissionpolicybinding", "-o", "name").stdout.split()
    if names:
        k("delete", *names, "--ignore-not-found")


def gateway(name: str, ns: str) -> dict[str, Any]:
    gw = builders.gateway(name, ns, ready=False)
    gw["metadata"].pop("labels", None)
    return gw


def pod(ns: str, labels: dict[str, str], *, owned: bool, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": "p-", "namespace": ns, "labels": labels}
    if owned:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "6d1e4c1e-0000-4000-8000-000000000001"}
            | {"controller": True, "blockOwnerDeletion": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec or {"containers": [{"name": "c", "image": "x"}]},
    }


def replica_of(docs: list[dict[str, Any]], ns: str) -> dict[str, Any]:
    """The Pod the ReplicaSet controller would create from the rendered Deployment's template."""
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    template = dep["spec"]["template"]
    return pod(ns, template["metadata"]["labels"], owned=True, spec=template["spec"])


def create(k: Kubectl, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return k("create", "--dry-run=server", "-o", "name", "-f", "-", input=yaml.safe_dump(obj), check=False)


def render(k: Kubectl, path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(k("kustomize", str(path)).stdout) if d]


def certs(out: Path, namespace: str, *flags: str) -> Path:
    subprocess.run([EXE, "certs", "--namespace", namespace, "--out", str(out), *flags], check=True, cwd=ROOT)
    return out


def own_deployment_updates(k: Kubectl, ns: str) -> bool:
    """A rollout of the webhook itself (its template carries istio.io/dataplane-mode, a key the
    workloads entry forwards): only the objectSelector keeps it from the fail-closed entry."""
    patch = ["patch", "deployment", "waypoint-webhook", "-n", ns, "--dry-run=server", "--type=merge"]
    p = k(*patch, "-p", '{"spec":{"template":{"metadata":{"annotations":{"rollout":"1"}}}}}', check=False)
    assert p.returncode == 0 or FAILED in p.stderr, p.stderr
    return p.returncode == 0


def down(k: Kubectl, ns: str = "tenant") -> None:
    """Wait until the configuration is in force: a labelled Pod is refused for want of the webhook."""
    probe = pod(ns, {"istio.io/use-waypoint": "wp"}, owned=False)
    wait_until(lambda: FAILED in create(k, probe).stderr, 60, "the webhook configuration to take effect", 0.5)


def test_with_every_replica_down_an_outage_blocks_only_what_could_be_denied(k: Kubectl, tmp_path: Path) -> None:
    docs = render(k, certs(tmp_path / "c", "waypoint-webhook"))
    k.apply(docs)
    down(k)
    refused = create(k, pod("tenant", {"istio.io/use-waypoint": "wp"}, owned=False))
    assert FAILED in refused.stderr and "consumers.validate.waypoint-webhook.io" in refused.stderr
    assert FAILED in create(k, gateway("other", "tenant")).stderr  # gateways: MissingMeshListener can deny
    assert (
        FAILED in k("label", "namespace", "tenant", "istio.io/use-waypoint=wp", "--dry-run=server", check=False).stderr
    )
    # Warn-only requests go to entries that fail open (B1).
    assert create(k, pod("tenant", {"istio.io/use-waypoint": "wp"}, owned=True)).returncode == 0
    assert k("delete", "gateway", "wp", "-n", "tenant", "--dry-run=server", check=False).returncode == 0
    # Its own pods, Deployment and namespace are never sent.
    own = create(k, replica_of(docs, "waypoint-webhook"))
    assert own.returncode == 0, own.stderr
    assert own_deployment_updates(k, "waypoint-webhook")
    label = ["label", "namespace", "waypoint-webhook", "istio.io/ingress-use-waypoint=false", "--dry-run=server"]
    assert k(*label, check=False).returncode == 0


def test_the_strict_component_makes_gateway_deletes_fail_closed(k: Kubectl, tmp_path: Path) -> None:
    certs(tmp_path / "c", "waypoint-webhook")
    overlay = tmp_path / "strict"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["../c"], "components": [os.path.relpath(ROOT / "manifests" / "strict", overlay)]})
    )
    docs = render(k, overlay)
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAYPOINT_WEBHOOK_PRESET"] == "strict"  # the server and its failure policies, together
    k.apply(docs)
    delete = ["delete", "gateway", "wp", "-n", "tenant", "--dry-run=server"]
    wait_until(lambda: FAILED in k(*delete, check=False).stderr, 60, "the strict Gateway-delete entry", 0.5)
    assert create(k, pod("tenant", {"istio.io/use-waypoint": "wp"}, owned=True)).returncode == 0


def test_a_plain_overlay_into_another_namespace_never_locks_out_its_own_pods(k: Kubectl, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": "mesh-policy", "resources": [os.path.relpath(ROOT / "manifests", overlay)]})
    )
    docs = render(k, overlay)
    assert not [d for d in docs if d["kind"] == "Namespace"]
    for doc in docs:
        for wh in doc.get("webhooks", []):
            assert wh["clientConfig"]["service"]["namespace"] == "mesh-policy"
            assert wh["objectSelector"]["matchExpressions"] == [{"key": SELF, "operator": "NotIn", "values": ["true"]}]
    k("create", "namespace", "mesh-policy", check=False)
    k.apply(docs)
    down(k, "mesh-policy")
    own = create(k, replica_of(docs, "mesh-policy"))
    assert own.returncode == 0, own.stderr
    assert own_deployment_updates(k, "mesh-policy")
    # The namespace is not excluded: the tenants' objects there are still guarded.
    assert FAILED in create(k, pod("mesh-policy", {"istio.io/use-waypoint": "wp"}, owned=False)).stderr


def test_an_install_into_istio_system_never_owns_or_excludes_it(k: Kubectl, tmp_path: Path) -> None:
    k("create", "namespace", "istio-system", check=False)
    k("label", "namespace", "istio-system", "owner=platform", "--overwrite")
    docs = render(k, certs(tmp_path / "c", "istio-system"))
    assert not [d for d in docs if d["kind"] == "Namespace"]  # kubectl delete -k never deletes istio-system
    for doc in docs:
        for wh in doc.get("webhooks", []):
            (names,) = wh["namespaceSelector"]["matchExpressions"]
            assert names["values"] == ["kube-system", "kube-node-lease"]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WAYPOINT_WEBHOOK_EXCLUDED_NAMESPACES"] == "kube-system,kube-node-lease"
    k.apply(docs)
    down(k, "istio-system")
    labels = yaml.safe_load(k("get", "namespace", "istio-system", "-o", "yaml").stdout)["metadata"]["labels"]
    assert labels["owner"] == "platform" and "istio.io/dataplane-mode" not in labels and SELF not in labels
    assert FAILED in create(k, gateway("egress", "istio-system")).stderr  # its waypoints are judged
    own = create(k, replica_of(docs, "istio-system"))
    assert own.returncode == 0, own.stderr
    assert own_deployment_updates(k, "istio-system")


def test_fail_open_still_denies_the_syntax_rules_in_the_api_server(k: Kubectl, tmp_path: Path) -> None:
    docs = render(k, certs(tmp_path / "c", "waypoint-webhook", "--fail-open"))
    k.apply(docs)
    bad = pod("tenant", {"istio.io/use-waypoint": "None"}, owned=False)
    wait_until(lambda: "InvalidUseWaypoint" in create(k, bad).stderr, 60, "the fail-open policies", 0.5)
    good = create(k, pod("tenant", {"istio.io/use-waypoint": "wp"}, owned=False))
    assert good.returncode == 0, good.stderr  # the webhook is down and fails open


def test_admission_through_kubectl_with_the_rendered_configuration(
    cp: ControlPlane, k: Kubectl, tmp_path: Path
) -> None:
    """The real webhook behind the rendered configuration (its Service swapped for a loopback URL)."""
    docs = render(k, certs(tmp_path / "c", "waypoint-webhook"))
    k.apply([d for d in docs if not d["kind"].endswith("WebhookConfiguration")])
    wh = start_webhook(cp, k, tmp_path / "w")
    try:
        port = wh.url.rsplit(":", 1)[1]
        bundle = base64.b64encode(wh.ca.read_bytes()).decode()
        for doc in docs:
            for entry in doc.get("webhooks", []):
                path = entry["clientConfig"]["service"]["path"]
                entry["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        k.apply([d for d in docs if d["kind"].endswith("WebhookConfiguration")])
        label = ["label", "namespace", "tenant", "istio.io/use-waypoint=None", "--dry-run=server"]
        wait_until(lambda: "InvalidUseWaypoint" in k(*label, check=False).stderr, 60, "a denial", 0.5)
        ok = k("label", "namespace", "tenant", "istio.io/use-waypoint=wp", "--dry-run=server", check=False)
        assert ok.returncode == 0, ok.stderr
    finally:
        wh.stop(15)


def test_make_renew_certs_rotates_the_serving_pair_and_keeps_the_ca_bundle(
    cp: ControlPlane, k: Kubectl, tmp_path: Path
) -> None:
    """The one command of the README (issue 19 item 6): a new serving pair, same CA, applied."""
    out = tmp_path / "generated"
    make = ["make", "-C", str(ROOT), "NAMESPACE=renew", f"CERTS_OUT={out}"]
    env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig)}
    subprocess.run([*make, "renew-certs"], check=True, capture_output=True, env=env)
    before = yaml.safe_load(k("get", "secret", "waypoint-webhook-tls", "-n", "renew", "-o", "yaml").stdout)["data"]
    bundle = k(
        "get",
        "validatingwebhookconfiguration",
        "waypoint-webhook",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    )
    subprocess.run([*make, "renew-certs"], check=True, capture_output=True, env=env)
    after = yaml.safe_load(k("get", "secret", "waypoint-webhook-tls", "-n", "renew", "-o", "yaml").stdout)["data"]
    assert after["tls.crt"] != before["tls.crt"] and after["ca.crt"] == before["ca.crt"]
    again = k(
        "get",
        "validatingwebhookconfiguration",
        "waypoint-webhook",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    )
    assert again.stdout == bundle.stdout == after["ca.crt"]


def test_cert_manager_overlay_takes_the_fail_open_component(k: Kubectl, tmp_path: Path) -> None:
    overlay = tmp_path / "cm-open"
    overlay.mkdir()
    doc = {
        "resources": [os.path.relpath(ROOT / "certs" / "cert-manager", overlay)],
        "components": [os.path.relpath(ROOT / "manifests" / "fail-open", overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    docs = render(k, overlay)
    (vwc,) = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    assert {wh["failurePolicy"] for wh in vwc["webhooks"]} == {"Ignore"}
    assert (
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "waypoint-webhook/waypoint-webhook-serving"
    )
    assert vwc["metadata"]["annotations"]["admissions.enforcer/disabled"] == "true"
    assert len([d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]) == len(POLICIES)
