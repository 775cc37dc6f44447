"""AdmissionReview payloads for the benchmark, as kube-apiserver would send them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

GW = ("gateway.networking.k8s.io", "v1", "Gateway")


def review(
    obj: dict[str, Any] | None,
    kind: tuple[str, str, str],
    op: str = "CREATE",
    old: dict[str, Any] | None = None,
    ns: str = "ns-5",
) -> dict[str, Any]:
    src = obj if obj is not None else old
    assert src is not None
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b5f1c9f2-3c3e-4e43-9d3b-6f1d8f0c2a11",
            "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "resource": {"group": kind[0], "version": kind[1], "resource": kind[2].lower() + "s"},
            "requestKind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "namespace": "" if kind[2] == "Namespace" else ns,
            "name": src["metadata"].get("name", ""),
            "operation": op,
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def _pod(name: str, ns: str, labels: dict[str, str], pad: int) -> dict[str, Any]:
    env = [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 40} for i in range(pad)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": "reviews", "version": "v2", **labels},
            "annotations": {"kubectl.kubernetes.io/default-container": "reviews"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "reviews-v2-5b667bcbf8",
                    "uid": "2b0e5f0e-8b9c-4f1e-9a77-3d8a1e1c0f00",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "reviews",
                    "image": "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2",
                    "ports": [{"containerPort": 9080}],
                    "env": env,
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
            "serviceAccountName": "bookinfo-reviews",
            "restartPolicy": "Always",
        },
    }


def pod_4k(namespaces: int) -> dict[str, Any]:
    ns = f"ns-{5 % namespaces}"
    # wp-1 is workload-only in ns-1 with from: All (state.py), so this binds cleanly.
    return review(
        _pod(
            "reviews-v2-5b667bcbf8-spnnh",
            ns,
            {"istio.io/use-waypoint": "wp-1", "istio.io/use-waypoint-namespace": "ns-1"},
            45,
        ),
        ("", "v1", "Pod"),
        ns=ns,
    )


def gateway_delete(ns: str, name: str) -> dict[str, Any]:
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }
    return review(None, GW, "DELETE", old=gw, ns=ns)


def all_payloads() -> dict[str, tuple[str, dict[str, Any]]]:
    gw_min: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "ns-5"},
        "spec": {"gatewayClassName": "istio-waypoint"},
    }
    gw_full = {
        **gw_min,
        "metadata": {**gw_min["metadata"], "labels": {"istio.io/waypoint-for": "service"}},
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
                            "selector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-7"}},
                        }
                    },
                }
            ],
        },
    }
    old_ns: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "ns-7",
            "labels": {"istio.io/dataplane-mode": "ambient", "team": "team-7", "kubernetes.io/metadata.name": "ns-7"},
        },
    }
    new_ns = {
        **old_ns,
        "metadata": {
            **old_ns["metadata"],
            "labels": {
                **old_ns["metadata"]["labels"],
                "istio.io/use-waypoint": "wp-5",
                "istio.io/use-waypoint-namespace": "ns-5",
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "reviews",
            "namespace": "ns-5",
            "labels": {"app": "reviews", "istio.io/use-waypoint": "wp-5", "istio.io/use-waypoint-namespace": "ns-5"},
        },
        "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080, "name": "http"}]},
    }
    se = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": "external",
            "namespace": "ns-5",
            "labels": {"istio.io/use-waypoint": "wp-5", "istio.io/use-waypoint-namespace": "ns-5"},
        },
        "spec": {
            "hosts": ["api.example.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "STATIC",
            "endpoints": [
                {
                    "address": f"10.1.{i // 250}.{i % 250}",
                    **(
                        {"labels": {"istio.io/use-waypoint": "wp-1", "istio.io/use-waypoint-namespace": "ns-1"}}
                        if i % 2
                        else {}
                    ),
                }
                for i in range(50)
            ],
        },
    }
    big = _pod("big", "ns-5", {"istio.io/use-waypoint": "wp-1", "istio.io/use-waypoint-namespace": "ns-1"}, 10)
    big["metadata"]["annotations"]["example.com/blob"] = "y" * (1024 * 1024)
    return {
        "pod-4k": ("/validate", pod_4k(1000)),
        "gateway-mutate": ("/mutate", review(gw_min, GW)),
        "gateway-validate": ("/validate", review(gw_full, GW)),
        "namespace-update": ("/validate", review(new_ns, ("", "v1", "Namespace"), "UPDATE", old=old_ns)),
        "service": ("/validate", review(svc, ("", "v1", "Service"))),
        "serviceentry-50ep": ("/validate", review(se, ("networking.istio.io", "v1", "ServiceEntry"))),
        "gateway-delete-500": ("/validate", gateway_delete("ns-0", "hot-waypoint")),
        "pod-1mb": ("/validate", review(big, ("", "v1", "Pod"))),
    }


def write(path: Path, obj: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj))
    return path


def write_all(out: Path) -> dict[str, tuple[str, Path]]:
    return {name: (route, write(out / f"{name}.json", obj)) for name, (route, obj) in all_payloads().items()}


def api_service(tag: str) -> dict[str, Any]:
    # Headless: the test cluster's service IP range is a /24, and allocation is not what is measured.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{tag}-__N__", "labels": {"app": "bench", "istio.io/use-waypoint": "waypoint"}},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
    }


def api_pod(tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{tag}-__N__", "labels": {"app": "bench", "istio.io/use-waypoint": "waypoint"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def api_service_bad() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "probe", "namespace": "bench", "labels": {"istio.io/use-waypoint": "None"}},
        "spec": {"ports": [{"port": 80}]},
    }
