"""The one table of the kinds the webhook handles (docs/rules.md B0).

Everything that depends on "which kinds" derives from :data:`KINDS`: the engine's dispatch, the
index, the live view's watches, parsing, ``check``, the audit, the metric label set, and the test
builders. A unit test checks the webhook rules in ``manifests/webhooks.yaml``, the ClusterRole
and the end-to-end tier's expectations against it, so adding a kind is one row here plus the
rules that read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

GATEWAY_GROUP = "gateway.networking.k8s.io"
ISTIO_GROUP = "networking.istio.io"


class Role(enum.Enum):
    """How the engine judges a kind and the index keeps it."""

    GATEWAY = "gateway"  # judged as a (possible) waypoint; indexed as a WaypointInfo
    CLASS = "class"  # a GatewayClass: waypoint-for default, controller, inbound binding
    NAMESPACE = "namespace"  # a consumer whose labels its objects inherit
    CONSUMER = "consumer"  # an object that can name a waypoint with its own labels
    WORKLOAD = "workload"  # judged through its pod template, never indexed
    POLICY = "policy"  # a policy that attaches to a waypoint's target (A7), indexed by target
    ROUTE = "route"  # a route with a Service or ServiceEntry parent (A7, GAMMA)


@dataclass(frozen=True)
class KindSpec:
    kind: str
    group: str
    resource: str
    versions: tuple[str, ...]  # registered in the webhook rules (matchPolicy Equivalent covers others)
    cluster_scoped: bool
    operations: tuple[str, ...]  # registered in the validating webhook
    role: Role
    watch_version: str | None = None  # the live view lists and watches this version; None: not watched
    watch_selector: str | None = None  # the live view's label selector (the audit watches everything)
    template_path: tuple[str, ...] = ()  # WORKLOAD: where its pod template is
    kept: str = ""  # what the view keeps of it (docs)

    @property
    def group_kind(self) -> tuple[str, str]:
        return (self.group, self.kind)

    @property
    def scope(self) -> str:
        return "Cluster" if self.cluster_scoped else "Namespaced"

    def api_version(self, version: str | None = None) -> str:
        v = version or self.watch_version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v

    @property
    def collection(self) -> str:
        """The collection path across all namespaces, in the watched (else first) version."""
        v = self.watch_version or self.versions[0]
        prefix = f"/apis/{self.group}/{v}" if self.group else f"/api/{v}"
        return f"{prefix}/{self.resource}"


_C, _U, _D = "CREATE", "UPDATE", "DELETE"
_GATEWAY_VERSIONS = ("v1", "v1beta1")
_ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")


def _workload(kind: str, group: str, resource: str, path: tuple[str, ...]) -> KindSpec:
    return KindSpec(
        kind=kind,
        group=group,
        resource=resource,
        versions=("v1",),
        cluster_scoped=False,
        operations=(_C, _U),
        role=Role.WORKLOAD,
        template_path=path,
    )


def _dependent(kind: str, group: str, resource: str, versions: tuple[str, ...], role: Role) -> KindSpec:
    """A7's kinds: judged on CREATE and UPDATE, and watched in their first version (a route kind
    whose v1 the cluster does not serve yet, TCPRoute and TLSRoute before Gateway API v1.5, is
    judged at admission all the same, and only missing from the reverse index)."""
    return KindSpec(
        kind=kind,
        group=group,
        resource=resource,
        versions=versions,
        cluster_scoped=False,
        operations=(_C, _U),
        role=role,
        watch_version=versions[0],
        kept="the Services, ServiceEntries and Gateways it targets (the reverse index of A7)",
    )


_TEMPLATE = ("spec", "template")

KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        kind="Gateway",
        group=GATEWAY_GROUP,
        resource="gateways",
        versions=_GATEWAY_VERSIONS,
        cluster_scoped=False,
        operations=(_C, _U, _D),
        role=Role.GATEWAY,
        watch_version="v1",
        kept="class, waypoint-for, listeners, addresses, binding, copied labels",
    ),
    KindSpec(
        kind="GatewayClass",
        group=GATEWAY_GROUP,
        resource="gatewayclasses",
        versions=_GATEWAY_VERSIONS,
        cluster_scoped=True,
        operations=(_C, _U),
        role=Role.CLASS,
        watch_version="v1",
        kept="waypoint-for, controllerName, inbound binding",
    ),
    KindSpec(
        kind="Namespace",
        group="",
        resource="namespaces",
        versions=("v1",),
        cluster_scoped=True,
        operations=(_C, _U),
        role=Role.NAMESPACE,
        watch_version="v1",
        kept="labels, the canary weight annotation, its own reference",
    ),
    KindSpec(
        kind="Service",
        group="",
        resource="services",
        versions=("v1",),
        cluster_scoped=False,
        operations=(_C, _U),
        role=Role.CONSUMER,
        watch_version="v1",
        kept="its references (own and canary)",
    ),
    KindSpec(
        kind="Pod",
        group="",
        resource="pods",
        versions=("v1",),
        cluster_scoped=False,
        operations=(_C, _U),
        role=Role.CONSUMER,
        watch_version="v1",
        watch_selector="istio.io/use-waypoint",
        kept="its reference",
    ),
    KindSpec(
        kind="ServiceEntry",
        group=ISTIO_GROUP,
        resource="serviceentries",
        versions=_ISTIO_VERSIONS,
        cluster_scoped=False,
        operations=(_C, _U),
        role=Role.CONSUMER,
        watch_version="v1",
        kept="its references, the endpoints' included",
    ),
    KindSpec(
        kind="WorkloadEntry",
        group=ISTIO_GROUP,
        resource="workloadentries",
        versions=_ISTIO_VERSIONS,
        cluster_scoped=False,
        operations=(_C, _U),
        role=Role.CONSUMER,
        watch_version="v1",
        kept="its reference (metadata or spec labels)",
    ),
    _workload("Deployment", "apps", "deployments", _TEMPLATE),
    _workload("StatefulSet", "apps", "statefulsets", _TEMPLATE),
    _workload("DaemonSet", "apps", "daemonsets", _TEMPLATE),
    _workload("ReplicaSet", "apps", "replicasets", _TEMPLATE),
    _workload("Job", "batch", "jobs", _TEMPLATE),
    _workload("CronJob", "batch", "cronjobs", ("spec", "jobTemplate", "spec", "template")),
    _dependent("AuthorizationPolicy", "security.istio.io", "authorizationpolicies", ("v1", "v1beta1"), Role.POLICY),
    _dependent("RequestAuthentication", "security.istio.io", "requestauthentications", ("v1", "v1beta1"), Role.POLICY),
    _dependent("Telemetry", "telemetry.istio.io", "telemetries", ("v1", "v1alpha1"), Role.POLICY),
    _dependent("WasmPlugin", "extensions.istio.io", "wasmplugins", ("v1alpha1",), Role.POLICY),
    _dependent("TrafficExtension", "extensions.istio.io", "trafficextensions", ("v1alpha1",), Role.POLICY),
    _dependent("EnvoyFilter", ISTIO_GROUP, "envoyfilters", ("v1alpha3",), Role.POLICY),
    _dependent("HTTPRoute", GATEWAY_GROUP, "httproutes", ("v1", "v1beta1"), Role.ROUTE),
    _dependent("GRPCRoute", GATEWAY_GROUP, "grpcroutes", ("v1", "v1alpha2"), Role.ROUTE),
    _dependent("TCPRoute", GATEWAY_GROUP, "tcproutes", ("v1", "v1alpha2"), Role.ROUTE),
    _dependent("TLSRoute", GATEWAY_GROUP, "tlsroutes", ("v1", "v1alpha3", "v1alpha2"), Role.ROUTE),
)

BY_GROUP_KIND: Mapping[tuple[str, str], KindSpec] = {k.group_kind: k for k in KINDS}
BY_KIND: Mapping[str, KindSpec] = {k.kind: k for k in KINDS}
WATCHED: tuple[KindSpec, ...] = tuple(k for k in KINDS if k.watch_version)
CLUSTER_SCOPED = frozenset(k.kind for k in KINDS if k.cluster_scoped)
CONSUMER_KINDS = frozenset(k.kind for k in KINDS if k.role in (Role.NAMESPACE, Role.CONSUMER))
TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {k.kind: k.template_path for k in KINDS if k.role is Role.WORKLOAD}
KIND_NAMES = frozenset(BY_KIND)


def spec_of(group: str, kind: str) -> KindSpec | None:
    return BY_GROUP_KIND.get((group, kind))


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


# The label every object of the webhook's own install carries (its pods included): the webhook
# configurations and the fail-open bindings skip it with an objectSelector, so whatever namespace
# and whatever tool installs it, the webhook never stands between its own Deployment and its pods.
SELF_LABEL = "waypoint-webhook.io/self"


def not_self() -> dict[str, list[dict[str, object]]]:
    """The objectSelector of every webhook entry and fail-open binding (a fresh dict each call)."""
    return {"matchExpressions": [{"key": SELF_LABEL, "operator": "NotIn", "values": ["true"]}]}


# Namespaces the installs exclude by default (the webhook's own dedicated namespace is added).
SYSTEM_NAMESPACES = ("kube-system", "kube-node-lease")
# Namespaces that are never the webhook's own: an install there never creates, labels or
# excludes them (shared and egress waypoints live in istio-system).
SHARED_NAMESPACES = ("default", "istio-system", "kube-public", "kube-system", "kube-node-lease")
