"""``make certs``: certificates and kustomize inputs for an in-cluster install.

Writes into ``--out`` (default ``certs/generated``, git-ignored): the CA (kept, with its key, so
a re-run only rotates the serving certificate and the caBundle stays valid), the serving pair
for ``waypoint-webhook.<ns>.svc``, a ``kubernetes.io/tls`` Secret, and a patch that injects the
caBundle into both webhook configurations. ``certs/kustomization.yaml`` combines them with
``manifests/``: ``kubectl apply -k certs/``.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import yaml

from webhook import tls

SERVICE = "waypoint-webhook"
WEBHOOKS = {
    "ValidatingWebhookConfiguration": [
        "gateways.validate.waypoint-webhook.io",
        "consumers.validate.waypoint-webhook.io",
        "workloads.validate.waypoint-webhook.io",
    ],
    "MutatingWebhookConfiguration": ["gateways.mutate.waypoint-webhook.io"],
}


def dns_names(namespace: str) -> list[str]:
    return [f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc.cluster.local", f"{SERVICE}.{namespace}"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(issued: tls.Issued, namespace: str) -> dict[str, Any]:
    b64 = _b64
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": f"{SERVICE}-tls", "namespace": namespace},
        "data": {"tls.crt": b64(issued.cert_pem), "tls.key": b64(issued.key_pem), "ca.crt": b64(issued.ca_pem)},
    }


def ca_bundle_patch(ca_bundle: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": SERVICE},
            "webhooks": [{"name": n, "clientConfig": {"caBundle": ca_bundle}} for n in names],
        }
        for kind, names in WEBHOOKS.items()
    ]


def generate(namespace: str, out: Path, days: int = 365) -> tls.Issued:
    ca_pair = None
    if (out / "ca.crt").exists() and (out / "ca.key").exists():
        ca_pair = ((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    issued = tls.issue(dns_names(namespace), [], days=days, ca_pair=ca_pair)
    tls.write(issued, out, with_ca_key=True)
    (out / "secret.yaml").write_text(yaml.safe_dump(secret(issued, namespace), sort_keys=False))
    (out / "cabundle-patch.yaml").write_text(yaml.safe_dump_all(ca_bundle_patch(issued.ca_bundle), sort_keys=False))
    return issued


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m webhook.deploy")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("certs", help="serving certificate, Secret and caBundle patch for an in-cluster install")
    c.add_argument("--namespace", default=SERVICE)
    c.add_argument("--out", default="certs/generated")
    c.add_argument("--days", type=int, default=365)
    args = ap.parse_args(argv)
    out = Path(args.out)
    reused = (out / "ca.key").exists()
    generate(args.namespace, out, args.days)
    print(
        f"wrote {out}/: serving certificate for {', '.join(dns_names(args.namespace))}"
        f" ({'existing CA reused' if reused else 'new CA'}), secret.yaml, cabundle-patch.yaml"
    )
    print("install with: kubectl apply -k certs/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
