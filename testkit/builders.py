"""Builders for raw Kubernetes objects and admission requests used across test tiers."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

import orjson

from webhook.core import kinds as kind_table
from webhook.core.engine import Engine, Settings, Verdict
from webhook.core.findings import Policy, Severity
from webhook.core.index import Index, IndexView
from webhook.core.request import AdmissionRequest, GroupVersionKind

# docs/rules.md B0, written out independently of webhook.core.kinds (which tests/unit/test_kinds.py checks against it).
B0 = {
    ("gateway.networking.k8s.io", "gateways"): ({"v1", "v1beta1"}, {"CREATE", "UPDATE", "DELETE"}),
    ("gateway.networking.k8s.io", "gatewayclasses"): ({"v1", "v1beta1"}, {"CREATE", "UPDATE"}),
    ("", "namespaces"): ({"v1"}, {"CREATE", "UPDATE"}),
    ("", "services"): ({"v1"}, {"CREATE", "UPDATE"}),
    ("", "pods"): ({"v1"}, {"CREATE", "UPDATE"}),
    ("networking.istio.io", "serviceentries"): ({"v1", "v1beta1", "v1alpha3"}, {"CREATE", "UPDATE"}),
    ("networking.istio.io", "workloadentries"): ({"v1", "v1beta1", "v1alpha3"}, {"CREATE", "UPDATE"}),
    **{
        ("apps", r): ({"v1"}, {"CREATE", "UPDATE"})
        for r in ("deployments", "statefulsets", "daemonsets", "replicasets")
    },
    **{("batch", r): ({"v1"}, {"CREATE", "UPDATE"}) for r in ("jobs", "cronjobs")},
    # A7: the policies and routes that need a waypoint
    ("security.istio.io", "authorizationpolicies"): ({"v1", "v1beta1"}, {"CREATE", "UPDATE"}),
    ("security.istio.io", "requestauthentications"): ({"v1", "v1beta1"}, {"CREATE", "UPDATE"}),
    ("telemetry.istio.io", "telemetries"): ({"v1", "v1alpha1"}, {"CREATE", "UPDATE"}),
    ("extensions.istio.io", "wasmplugins"): ({"v1alpha1"}, {"CREATE", "UPDATE"}),
    ("extensions.istio.io", "trafficextensions"): ({"v1alpha1"}, {"CREATE", "UPDATE"}),
    ("networking.istio.io", "envoyfilters"): ({"v1alpha3"}, {"CREATE", "UPDATE"}),
    ("gateway.networking.k8s.io", "httproutes"): ({"v1", "v1beta1"}, {"CREATE", "UPDATE"}),
    ("gateway.networking.k8s.io", "grpcroutes"): ({"v1", "v1alpha2"}, {"CREATE", "UPDATE"}),
    ("gateway.networking.k8s.io", "tcproutes"): ({"v1", "v1alpha2"}, {"CREATE", "UPDATE"}),
    ("gateway.networking.k8s.io", "tlsroutes"): ({"v1", "v1alpha3", "v1alpha2"}, {"CREATE", "UPDATE"}),
}
MESH = {"name": "mesh", "port": 15008, "protocol": "HBONE"}
_uid = itertools.count()

KINDS = {k.kind: (k.group, k.api_version().rpartition("/")[2]) for k in kind_table.KINDS}  # kind -> (group, version)


def api_version(kind: str) -> str:
    group, version = KINDS[kind]
    return f"{group}/{version}" if group else version


def meta(
    name: str,
    namespace: str | None,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None = None,
    owner: bool = False,
) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    if labels is not None:
        m["labels"] = dict(labels)
    if annotations is not None:
        m["annotations"] = dict(annotations)
    if owner:
        m["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": True}
        ]
    return m


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, labels or None)}


def ns_labels(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, labels)}


def gateway(
    name: str = "waypoint",
    ns: str = "default",
    cls: str = "istio-waypoint",
    labels: dict[str, str] | None = None,
    listeners: list[dict[str, Any]] | None = None,
    ready: bool = True,
    routes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if listeners is None:
        listener = dict(MESH)
        if routes is not None:
            listener["allowedRoutes"] = {"namespaces": routes}
        listeners = [listener]
    obj: dict[str, Any] = {
        "apiVersion": api_version("Gateway"),
        "kind": "Gateway",
        "metadata": meta(name, ns, labels),
        "spec": {"gatewayClassName": cls, "listeners": listeners},
    }
    if ready:
        obj["status"] = {"addresses": [{"type": "IPAddress", "value": "10.0.0.9"}]}
    return obj


def gateway_class(
    name: str,
    labels: dict[str, str] | None = None,
    controller: str = "istio.io/mesh-controller",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": api_version("GatewayClass"),
        "kind": "GatewayClass",
        "metadata": meta(name, None, labels, annotations),
        "spec": {"controllerName": controller},
    }


def consumer(
    kind: str,
    name: str = "obj",
    ns: str = "default",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    owner: bool = False,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": api_version(kind),
        "kind": kind,
        "metadata": meta(name, ns, labels, annotations, owner),
    }
    if spec is not None:
        obj["spec"] = spec
    elif kind == "Pod":
        obj["spec"] = {"containers": [{"name": "c", "image": "busybox"}]}
    return obj


def workload(
    kind: str, name: str = "app", ns: str = "default", labels: dict[str, str] | None = None, owner: bool = False
) -> dict[str, Any]:
    template = {"metadata": {"labels": dict(labels or {})}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    spec: dict[str, Any] = (
        {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
        if kind == "CronJob"
        else {"selector": {"matchLabels": {"app": name}}, "template": template}
    )
    return {"apiVersion": api_version(kind), "kind": kind, "metadata": meta(name, ns, None, owner=owner), "spec": spec}


def policy(
    kind: str = "AuthorizationPolicy",
    name: str = "pol",
    ns: str = "default",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A policy of A7 (``targetRefs=[…]``, ``selector={…}``, ``action``, ``rules`` as spec fields)."""
    return {"apiVersion": api_version(kind), "kind": kind, "metadata": meta(name, ns, None, annotations), "spec": spec}


def target(kind: str, name: str, group: str | None = None) -> dict[str, str]:
    """A targetRefs entry; the group defaults to the one the kind is supported with (Z1)."""
    default = {"Gateway": "gateway.networking.k8s.io", "GatewayClass": "gateway.networking.k8s.io",
               "ServiceEntry": "networking.istio.io"}.get(kind, "")  # fmt: skip
    return {"group": default if group is None else group, "kind": kind, "name": name}


def route(
    kind: str = "HTTPRoute", name: str = "rt", ns: str = "default", parents: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A route with ``parents`` (parentRefs entries; ``service_parent`` builds a Service one)."""
    spec = {"parentRefs": parents or [], "rules": [{"backendRefs": [{"name": "b", "port": 80}]}]}
    return {"apiVersion": api_version(kind), "kind": kind, "metadata": meta(name, ns, None), "spec": spec}


def service_parent(name: str, namespace: str | None = None, kind: str = "Service") -> dict[str, str]:
    ref = {"group": "" if kind == "Service" else "networking.istio.io", "kind": kind, "name": name}
    return ref | ({"namespace": namespace} if namespace else {})


def state(*objects: dict[str, Any]) -> Index:
    index = Index()
    for o in objects:
        index.apply(copy.deepcopy(o))
    return index


def request(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    kind: str | None = None,
    dry_run: bool = False,
) -> AdmissionRequest:
    src = obj if obj is not None else old
    assert src is not None
    kind = kind or src["kind"]
    group, version = KINDS[kind]
    ns = src["metadata"].get("namespace", "") if kind not in ("Namespace", "GatewayClass") else ""
    return AdmissionRequest(
        uid=f"uid-{next(_uid)}",
        kind=GroupVersionKind(group, version, kind),
        operation=operation,
        namespace=ns,
        name=src["metadata"].get("name", ""),
        object=obj,
        old_object=old,
        dry_run=dry_run,
    )


def review_body(
    obj: dict[str, Any] | None,
    uid: str = "u-1",
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    kind: str | None = None,
) -> bytes:
    """An AdmissionReview v1 request on the wire, as kube-apiserver sends it."""
    req = request(obj, operation, old, kind)
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": req.kind.group, "version": req.kind.version, "kind": req.kind.kind},
                "namespace": req.namespace,
                "name": req.name,
                "operation": operation,
                "object": obj,
                "oldObject": old,
                "userInfo": {"username": "tester"},
            },
        }
    )


class UnsyncedView(IndexView):
    def synced(self) -> bool:
        return False


def engine(
    index: Index | None = None,
    preset: str = "default",
    synced: bool = True,
    pin: bool = False,
    overrides: Mapping[str, Severity] | None = None,
) -> Engine:
    view = IndexView(index or Index()) if synced else UnsyncedView(index or Index())
    return Engine(view, Settings(policy=Policy(preset, dict(overrides or {})), pin_waypoint_for=pin))


def verdict_codes(v: Verdict) -> dict[str, str]:
    """{code: severity}; a code reported twice keeps its worst severity."""
    out: dict[str, str] = {}
    for j in v.judged:
        if out.get(j.code) != "deny":
            out[j.code] = str(j.severity)
    return out


def judge(
    e: Engine, obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> dict[str, str]:
    return verdict_codes(e.validate(request(obj, operation, old)))
