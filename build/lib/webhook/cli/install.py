"""Kustomize inputs for a self-managed install in any namespace (``make certs NAMESPACE=x``).

Writes next to the certificates: a ``kubernetes.io/tls`` Secret, a patch per webhook
configuration that injects the caBundle and excludes the install namespace from the webhooks'
namespaceSelector (the webhook must never judge its own namespace, or a broken rollout could lock
itself out), and a ``kustomization.yaml`` that renders ``manifests/`` into that namespace. The
namespace transformer moves every namespaced object, the Namespace itself, the RBAC subject and
``clientConfig.service.namespace``; the selector values and the certificate's names are what it
cannot know, so they are derived here from the same namespace.
"""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from webhook.admission import tls

SERVICE = "waypoint-webhook"
SECRET = f"{SERVICE}-tls"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def dns_names(namespace: str) -> list[str]:
    return [f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc.cluster.local", f"{SERVICE}.{namespace}"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(issued: tls.Issued, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": namespace},
        "data": {
            "tls.crt": _b64(issued.cert_pem),
            "tls.key": _b64(issued.key_pem),
            "ca.crt": _b64(issued.ca_pem),
        },
    }


def base_namespace(manifests: Path) -> str:
    doc = yaml.safe_load((manifests / "kustomization.yaml").read_text())
    return str(doc.get("namespace", "default"))


def webhook_patches(manifests: Path, namespace: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Per configuration, per webhook: the caBundle, and its namespaceSelector with the base
    namespace replaced by ``namespace`` wherever it is named."""
    base = base_namespace(manifests)
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
                    expr["values"] = [namespace if v == base else v for v in expr.get("values", [])]
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


def binding_patches(namespace: str) -> list[dict[str, Any]]:
    """The fail-open policies' bindings exclude the install namespace, as the webhooks do."""
    from webhook.core.policies import documents

    return [
        {"apiVersion": d["apiVersion"], "kind": d["kind"], "metadata": d["metadata"], "spec": d["spec"]}
        for d in documents(namespace)
        if d["kind"] == "ValidatingAdmissionPolicyBinding"
    ]


def kustomization(out: Path, manifests: Path, namespace: str, *, fail_open: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": [os.path.relpath(manifests.resolve(), out.resolve()), "secret.yaml"],
        "patches": [{"path": "webhooks-patch.yaml"}],
    }
    if fail_open:
        doc["components"] = [os.path.relpath((manifests / FAIL_OPEN).resolve(), out.resolve())]
    return doc


def generate(
    namespace: str, out: Path, manifests: Path, days: int = 365, *, fail_open: bool = False
) -> tuple[tls.Issued, bool]:
    """Write the install into ``out``; reuse the CA found there, so the caBundle stays valid
    across serving-certificate rotations. Returns the issued pair and whether the CA was reused."""
    ca_pair = None
    if (out / "ca.crt").exists() and (out / "ca.key").exists():
        ca_pair = ((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    issued = tls.issue(dns_names(namespace), [], days=days, ca_pair=ca_pair)
    tls.write(issued, out, with_ca_key=True)
    tls.write_private(out / "secret.yaml", yaml.safe_dump(secret(issued, namespace), sort_keys=False).encode())
    patches = webhook_patches(manifests, namespace, issued.ca_bundle) + (
        binding_patches(namespace) if fail_open else []
    )
    (out / "webhooks-patch.yaml").write_text(yaml.safe_dump_all(patches, sort_keys=False))
    (out / "kustomization.yaml").write_text(
        "# Written by `make certs`; install with `kubectl apply -k certs/`.\n"
        + yaml.safe_dump(kustomization(out, manifests, namespace, fail_open=fail_open), sort_keys=False)
    )
    return issued, ca_pair is not None
