"""Which objects the API server sends: the CEL ``matchConditions`` of manifests/webhooks.yaml,
defined once here and rendered to CEL, with the same test in Python.

A consumer (or a workload's pod template) is sent only when it carries a key some rule reads.
The YAML holds :func:`consumer_condition` and :func:`template_condition` verbatim (a unit test
compares them), the continuous audit judges exactly what :func:`consumer_forwarded` accepts, and
a unit test fails when a rule can fire on an object carrying a key these do not forward (the
API server would never send it, and only an end-to-end test would notice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.kinds import Role, group_of, spec_of
from webhook.core.model import CONNECT_STRATEGY, DATAPLANE_MODE, INGRESS_USE_WAYPOINT, USE_WAYPOINT


@dataclass(frozen=True)
class Keys:
    """Label or annotation keys that make an object relevant: a prefix match or an exact key."""

    prefixes: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()

    def match(self, key: object) -> bool:
        return isinstance(key, str) and (key.startswith(self.prefixes) or key in self.exact)

    def any_in(self, mapping: Any) -> bool:
        """True when a mapping holds a matching key; a malformed one counts (it must be judged,
        to be reported as malformed)."""
        if mapping is None:
            return False
        return not isinstance(mapping, dict) or any(self.match(k) for k in mapping)

    def cel(self, var: str) -> str:
        tests = [f"k.startsWith('{p}')" for p in self.prefixes] + [f"k == '{k}'" for k in self.exact]
        return f"{var}.exists(k, {' || '.join(tests)})"


# Every use-waypoint key (the canary ones included) is a prefix match on istio.io/use-waypoint.
OBJECT_LABELS = Keys((USE_WAYPOINT,), (DATAPLANE_MODE, INGRESS_USE_WAYPOINT))
# misplaced references (UseWaypointAnnotation), the canary weight, a ServiceEntry's racing connect strategy (V2)
OBJECT_ANNOTATIONS = Keys((USE_WAYPOINT,), (CONNECT_STRATEGY,))
SPEC_LABELS = Keys((USE_WAYPOINT,))  # a WorkloadEntry's spec.labels (R4)
ENDPOINT_LABELS = Keys((USE_WAYPOINT,))  # a ServiceEntry endpoint's labels (R4)
TEMPLATE_LABELS = Keys((USE_WAYPOINT,), (DATAPLANE_MODE,))
TEMPLATE_ANNOTATIONS = Keys((USE_WAYPOINT,))


def consumer_condition() -> str:
    """CEL for Namespaces, Services, Pods, ServiceEntries and WorkloadEntries (object or oldObject)."""
    return (
        "[object, oldObject].exists(o, o != null && ("
        f"(has(o.metadata.labels) && {OBJECT_LABELS.cel('o.metadata.labels')}) || "
        f"(has(o.metadata.annotations) && {OBJECT_ANNOTATIONS.cel('o.metadata.annotations')}) || "
        f"(has(o.spec) && has(o.spec.labels) && {SPEC_LABELS.cel('o.spec.labels')}) || "
        "(has(o.spec) && has(o.spec.endpoints) && "
        f"o.spec.endpoints.exists(e, has(e.labels) && {ENDPOINT_LABELS.cel('e.labels')})) || "
        # V2: a ServiceEntry that only works through a waypoint is judged even without a label.
        "(has(o.spec) && has(o.spec.hosts) && o.spec.hosts.exists(h, h.startsWith('*'))) || "
        "(has(o.spec) && has(o.spec.resolution) && o.spec.resolution == 'DYNAMIC_DNS')))"
    )


def template_condition() -> str:
    """CEL for workloads: the pod template's metadata (a CronJob's one level deeper)."""
    return (
        "[object, oldObject].exists(o, o != null && has(o.spec) && ["
        "has(o.spec.template) && has(o.spec.template.metadata) ? o.spec.template.metadata : {}, "
        "has(o.spec.jobTemplate) && has(o.spec.jobTemplate.spec) && has(o.spec.jobTemplate.spec.template) && "
        "has(o.spec.jobTemplate.spec.template.metadata) ? o.spec.jobTemplate.spec.template.metadata : {}"
        "].exists(m, "
        f"(has(m.labels) && {TEMPLATE_LABELS.cel('m.labels')}) || "
        f"(has(m.annotations) && {TEMPLATE_ANNOTATIONS.cel('m.annotations')})))"
    )


def _get(node: Any, *path: str) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def consumer_forwarded(obj: Mapping[str, Any]) -> bool:
    """:func:`consumer_condition`, in Python, for one object."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return True
    endpoints, hosts = _get(obj, "spec", "endpoints"), _get(obj, "spec", "hosts")
    return (
        OBJECT_LABELS.any_in(meta.get("labels"))
        or OBJECT_ANNOTATIONS.any_in(meta.get("annotations"))
        or SPEC_LABELS.any_in(_get(obj, "spec", "labels"))
        or (isinstance(endpoints, list) and any(ENDPOINT_LABELS.any_in(_get(e, "labels")) for e in endpoints))
        or (isinstance(hosts, list) and any(isinstance(h, str) and h.startswith("*") for h in hosts))
        or _get(obj, "spec", "resolution") == "DYNAMIC_DNS"
    )


def template_forwarded(obj: Mapping[str, Any]) -> bool:
    """:func:`template_condition`, in Python, for one workload."""
    for meta in (
        _get(obj, "spec", "template", "metadata"),
        _get(obj, "spec", "jobTemplate", "spec", "template", "metadata"),
    ):
        if TEMPLATE_LABELS.any_in(_get(meta, "labels")) or TEMPLATE_ANNOTATIONS.any_in(_get(meta, "annotations")):
            return True
    return False


def route_condition() -> str:
    """CEL for the routes of A7: only those with a Service or ServiceEntry parent (GAMMA) are sent."""
    return (
        "has(object.spec.parentRefs) && object.spec.parentRefs.exists(p, has(p.kind) && "
        "(p.kind == 'Service' || p.kind == 'ServiceEntry'))"
    )


def route_forwarded(obj: Mapping[str, Any]) -> bool:
    """:func:`route_condition`, in Python (a malformed list counts: it must be judged)."""
    parents = _get(obj, "spec", "parentRefs")
    if parents is None:
        return False
    if not isinstance(parents, list):
        return True
    return any(not isinstance(p, dict) or p.get("kind") in ("Service", "ServiceEntry") for p in parents)


def not_reviewed(obj: Mapping[str, Any], excluded: frozenset[str]) -> str:
    """Why admission would never review this object ("" when it would): its namespace is excluded,
    or it carries no key the webhooks' matchConditions forward. Gateways and GatewayClasses are
    always sent. ``check`` and ``audit`` mark such objects: istiod reads them all the same."""
    spec = spec_of(group_of(str(obj.get("apiVersion") or "")), str(obj.get("kind") or ""))
    if spec is None:
        return ""
    name, namespace = _get(obj, "metadata", "name"), _get(obj, "metadata", "namespace") or "default"
    if not isinstance(name, str) or not isinstance(namespace, str):
        return ""  # malformed: judged, and reported, as MalformedObject
    if spec.role is Role.NAMESPACE and name in excluded:
        return f"namespace {name} is excluded"
    if not spec.cluster_scoped and namespace in excluded:
        return f"namespace {namespace} is excluded"
    if spec.role in (Role.NAMESPACE, Role.CONSUMER) and not consumer_forwarded(obj):
        return "it carries no waypoint label, so the webhooks' matchConditions do not send it"
    if spec.role is Role.WORKLOAD and not template_forwarded(obj):
        return "its pod template carries no waypoint label, so the webhooks' matchConditions do not send it"
    if spec.role is Role.ROUTE and not route_forwarded(obj):
        return "it has no Service or ServiceEntry parent, so the webhooks' matchConditions do not send it"
    return ""
