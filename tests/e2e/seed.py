"""The seed document's workflows (Istio's "Configure waypoint proxies" page), command for command
through the webhook: the end-to-end tier runs them on Gateway API v1.6 (tests/e2e/test_kubectl.py)
and once on the seed's own v1.3.0 CRDs (tests/e2e/test_seed_crds.py)."""

from __future__ import annotations

import json
from typing import Any

from testkit.harness import Kubectl, eventually, make_ready, wait_until

UW = "istio.io/use-waypoint"

GENERATED_WAYPOINT = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  labels:
    istio.io/waypoint-for: {for_}
  name: {name}
  namespace: {ns}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
"""


def waypoint(name: str, ns: str, for_: str = "service") -> str:
    return GENERATED_WAYPOINT.format(name=name, ns=ns, for_=for_)


def service(name: str, ns: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"ports": [{"port": 9080, "name": "http"}]},
    }


def run(kubectl: Kubectl) -> None:
    """Every workflow of the seed document, in its order, through the webhook."""
    assert kubectl("get", "crd", "gateways.gateway.networking.k8s.io").returncode == 0
    kubectl("label", "ns", "default", "istio.io/dataplane-mode=ambient", "--overwrite")
    assert "ambient" in kubectl("get", "ns", "-L", "istio.io/dataplane-mode").stdout

    # istioctl waypoint generate --for service -n default | kubectl apply -f -
    out = kubectl.apply(waypoint("waypoint", "default"))
    assert "gateway.gateway.networking.k8s.io/waypoint created" in out.stdout and "Warning" not in out.stderr
    make_ready(kubectl, "waypoint", "default")

    # kubectl label ns default istio.io/use-waypoint=waypoint
    out = wait_until(
        lambda: (
            (p := kubectl("label", "ns", "default", f"{UW}=waypoint", "--overwrite"))
            and "WaypointNotReady" not in p.stderr
            and p
        ),
        10,
        "the view to see the waypoint ready",
    )
    assert "namespace/default labeled" in out.stdout and "Warning" not in out.stderr, out.stderr

    # Service waypoint for reviews
    kubectl.apply(waypoint("reviews-svc-waypoint", "default"))
    make_ready(kubectl, "reviews-svc-waypoint", "default", "10.0.0.51")
    kubectl.apply(service("reviews", "default", {"app": "reviews"}))
    out = kubectl("label", "service", "reviews", f"{UW}=reviews-svc-waypoint")
    assert "service/reviews labeled" in out.stdout
    assert "Error" not in out.stderr

    # Pod waypoint for reviews-v2 (--for workload)
    kubectl.apply(waypoint("reviews-v2-pod-waypoint", "default", "workload"))
    make_ready(kubectl, "reviews-v2-pod-waypoint", "default", "10.0.0.52")
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "reviews-v2-5b667bcbf8-spnnh",
                "namespace": "default",
                "labels": {"app": "reviews", "version": "v2"},
            },
            "spec": {
                "containers": [{"name": "reviews", "image": "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2"}]
            },
        }
    )
    out = kubectl("label", "pod", "-l", "version=v2,app=reviews", f"{UW}=reviews-v2-pod-waypoint")
    assert "pod/reviews-v2-5b667bcbf8-spnnh labeled" in out.stdout

    # Cross-namespace waypoint egress-gateway and ServiceEntry istio-site
    for n in ("common-infrastructure", "cross-namespace-waypoint-consumer"):
        kubectl("create", "namespace", n)
        kubectl("label", "namespace", n, "istio.io/dataplane-mode=ambient")
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "egress-gateway", "namespace": "common-infrastructure"},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [
                    {
                        "name": "mesh",
                        "port": 15008,
                        "protocol": "HBONE",
                        "allowedRoutes": {
                            "namespaces": {
                                "from": "Selector",
                                "selector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "cross-namespace-waypoint-consumer"}
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    make_ready(kubectl, "egress-gateway", "common-infrastructure", "10.0.0.60")
    kubectl.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "istio-site", "namespace": "cross-namespace-waypoint-consumer"},
            "spec": {
                "hosts": ["istio.io"],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
            },
        }
    )
    se = ("-n", "cross-namespace-waypoint-consumer")
    out = kubectl("label", "serviceentries.networking.istio.io", "istio-site", f"{UW}=egress-gateway", *se)
    assert "serviceentry.networking.istio.io/istio-site labeled" in out.stdout
    # Between the two commands the reference points at the consumer's own namespace: a warning, not a
    # denial, which is exactly why WaypointNotFound is a warning by default (B1).
    assert "Warning: WaypointNotFound:" in out.stderr
    out = kubectl(
        "label",
        "serviceentries.networking.istio.io",
        "istio-site",
        "istio.io/use-waypoint-namespace=common-infrastructure",
        *se,
    )
    assert "labeled" in out.stdout and "Warning" not in out.stderr, out.stderr

    # M2 is off by default: the egress-gateway keeps no waypoint-for label (istiod reads the
    # GatewayClass's default at run time, as `istioctl waypoint generate` intends)
    meta = json.loads(kubectl("get", "gateway", "egress-gateway", "-n", "common-infrastructure", "-o", "json").stdout)[
        "metadata"
    ]
    assert "istio.io/waypoint-for" not in (meta.get("labels") or {})

    # Cleanup: istioctl waypoint delete --all -n default; kubectl label ns default istio.io/use-waypoint-
    out = eventually(
        lambda: (p := kubectl("delete", "gateways.gateway.networking.k8s.io", "--all", "-n", "default")) and p
    )
    assert "deleted" in out.stdout
    assert "Warning: WaypointInUse:" in out.stderr  # the namespace, Service and Pod still point at them
    out = kubectl("label", "ns", "default", f"{UW}-")
    assert "namespace/default unlabeled" in out.stdout
