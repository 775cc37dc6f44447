"""Kustomize inputs for a self-managed install in any namespace (``make certs NAMESPACE=x``).

Writes next to the certificates: a ``kubernetes.io/tls`` Secret, a patch per webhook
configuration that injects the caBundle and sets the excluded namespaces, the same list for the
server (its environment) and a ``kustomization.yaml`` that renders ``manifests/`` into that
namespace. The namespace transformer moves every namespaced object, the RBAC subject and
``clientConfig.service.namespace``; the selector values and the certificate's names are what it
cannot know, so they are derived here from the same namespace.

The webhook's own pods never depend on the namespace: every object of the install carries
``waypoint-webhook.io/self``, which every webhook entry's objectSelector skips. A *dedicated*
namespace is also created here (a Namespace object of this install) and excluded by name. An
*existing* one (``--existing-namespace``, and always istio-system and the other shared
namespaces of :data:`SHARED_NAMESPACES`) is neither created, relabelled nor excluded: the
waypoints living there are judged like any others, and ``kubectl delete -k`` never deletes it.
"""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from webhook.admission import tls
from webhook.core.kinds import SELF_LABEL, SHARED_NAMESPACES, SYSTEM_NAMESPACES

SERVICE = "waypoint-webhook"
SECRET = f"{SERVICE}-tls"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
# What manifests/kustomization.yaml puts on every object of the base (and the chart on its own).
LABELS = {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/part-of": SERVICE, SELF_LABEL: "true"}


def dns_names(namespace: str) -> list[str]:
    return [f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc.cluster.local", f"{SERVICE}.{namespace}"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(issued: tls.Issued, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": namespace, "labels": dict(LABELS)},
        "data": {
            "tls.crt": _b64(issued.cert_pem),
            "tls.key": _b64(issued.key_pem),
            "ca.crt": _b64(issued.ca_pem),
        },
    }


def dedicated(namespace: str, *, existing: bool = False) -> bool:
    """Whether the install owns the namespace (creates and excludes it)."""
    return not existing and namespace not in SHARED_NAMESPACES


def exclusions(namespace: str, *, existing: bool = False) -> list[str]:
    """The namespaces admission skips: the system ones, and the install's own if dedicated."""
    return [*SYSTEM_NAMESPACES, *([namespace] if dedicated(namespace, existing=existing) else [])]


def namespace_object(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            # Not in the mesh (the webhook must keep working when Istio does not), and its own.
            "labels": {"istio.io/dataplane-mode": "none", SELF_LABEL: "true"},
        },
    }


def server_patch(excluded: list[str]) -> dict[str, Any]:
    """The server skips exactly the namespaces the API server does not send."""
    env = {"name": "WAYPOINT_WEBHOOK_EXCLUDED_NAMESPACES", "value": ",".join(excluded)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE},
        "spec": {"template": {"spec": {"containers": [{"name": "webhook", "env": [env]}]}}},
    }


def webhook_patches(manifests: Path, excluded: list[str], ca_bundle: str) -> list[dict[str, Any]]:
    """Per configuration, per webhook: the caBundle, and its namespaceSelector naming ``excluded``
    wherever the base names its exclusions."""
    patches = []
    for doc in yaml.safe_load_all((manifests / "webhooks.yaml").read_text()):
        if not doc or doc.get("kind") not in WEBHOOK_KINDS:
            continue
        webhooks = []
        for wh in doc["webhooks"]:
            entry: dict[str, Any] = {"name": wh["name"], "clientConfig": {"caBundle": ca_bundle}}
            selector = copy.deepcopy(wh.get("namespaceSelector"))
            if selector:
                for expr in selector.get("matchExpressions", []):
                    if expr.get("key") == "kubernetes.io/metadata.name":
                        expr["values"] = list(excluded)
                entry["namespaceSelector"] = selector
            webhooks.append(entry)
        patches.append(
            {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "metadata": {"name": doc["metadata"]["name"]},
                "webhooks": webhooks,
            }
        )
    return patches


FAIL_OPEN = "fail-open"  # the kustomize component under manifests/


def binding_patches(excluded: list[str]) -> list[dict[str, Any]]:
    """The fail-open policies' bindings exclude the same namespaces as the webhooks."""
    from webhook.core.policies import documents

    return [
        {"apiVersion": d["apiVersion"], "kind": d["kind"], "metadata": d["metadata"], "spec": d["spec"]}
        for d in documents(excluded)
        if d["kind"] == "ValidatingAdmissionPolicyBinding"
    ]


def write_patches(out: Path, patches: list[dict[str, Any]]) -> list[str]:
    """One file per patch, under ``patches/``: a file of several documents is refused by the
    kustomize of kubectl when it reads an older API server's schema (kubectl apply -k against
    Kubernetes 1.30 fails on it)."""
    folder = out / "patches"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    names = []
    for i, patch in enumerate(patches):
        name = f"patches/{i:02d}-{patch['kind'].lower()}-{patch['metadata']['name']}.yaml"
        (out / name).write_text(yaml.safe_dump(patch, sort_keys=False))
        names.append(name)
    return names


def kustomization(
    out: Path,
    manifests: Path,
    namespace: str,
    patches: list[str],
    *,
    fail_open: bool = False,
    existing: bool = False,
) -> dict[str, Any]:
    own = ["namespace.yaml"] if dedicated(namespace, existing=existing) else []
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [os.path.relpath(manifests.resolve(), out.resolve()), *own, "secret.yaml"],
        "patches": [
            *({"path": name} for name in patches),
            {"path": "server-patch.yaml", "target": {"kind": "Deployment", "name": SERVICE}},
        ],
    }
    if fail_open:
        doc["components"] = [os.path.relpath((manifests / FAIL_OPEN).resolve(), out.resolve())]
    return doc


def generate(
    namespace: str, out: Path, manifests: Path, days: int = 365, *, fail_open: bool = False, existing: bool = False
) -> tuple[tls.Issued, bool]:
    """Write the install into ``out``; reuse the CA found there, so the caBundle stays valid
    across serving-certificate rotations. Returns the issued pair and whether the CA was reused."""
    ca_pair = None
    if (out / "ca.crt").exists() and (out / "ca.key").exists():
        ca_pair = ((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    issued = tls.issue(dns_names(namespace), [], days=days, ca_pair=ca_pair)
    tls.write(issued, out, with_ca_key=True)
    tls.write_private(out / "secret.yaml", yaml.safe_dump(secret(issued, namespace), sort_keys=False).encode())
    excluded = exclusions(namespace, existing=existing)
    patches = [
        *webhook_patches(manifests, excluded, issued.ca_bundle),
        *(binding_patches(excluded) if fail_open else []),
    ]
    names = write_patches(out, patches)
    (out / "webhooks-patch.yaml").unlink(missing_ok=True)  # an earlier version's single file
    (out / "server-patch.yaml").write_text(yaml.safe_dump(server_patch(excluded), sort_keys=False))
    stale = out / "namespace.yaml"
    if dedicated(namespace, existing=existing):
        stale.write_text(yaml.safe_dump(namespace_object(namespace), sort_keys=False))
    elif stale.exists():
        stale.unlink()  # an earlier run for a dedicated namespace
    doc = kustomization(out, manifests, namespace, names, fail_open=fail_open, existing=existing)
    (out / "kustomization.yaml").write_text(
        "# Written by `make certs`; install with `kubectl apply -k certs/`.\n" + yaml.safe_dump(doc, sort_keys=False)
    )
    return issued, ca_pair is not None
