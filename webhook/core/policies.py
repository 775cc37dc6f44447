"""The syntax rules as ValidatingAdmissionPolicies, evaluated inside the API server itself.

Generated from the registry's rules that need no cluster state (their ``Rule.stateless``): each
becomes CEL that denies what the rule denies, with a message that starts with the same code.
Shipped in ``manifests/fail-open/`` beside the webhook at ``failurePolicy: Ignore``: if the
webhook is down, writes go through, but a ``use-waypoint=None`` still does not.

The policy is a lower bound of the webhook, never more: where the webhook needs state to decide
(is this Gateway's class a waypoint class by its controller? is this pod a Gateway's own?), the
policy judges only what it can know, or lets the object through. Like the webhook, it denies on
UPDATE only what the request introduces or changes (docs/rules.md B1), and it skips what the
webhook never denies: R0's objects, a controller's Pods.

``waypoint-webhook policy`` prints the documents; a unit test keeps
``manifests/fail-open/policy.yaml`` equal to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.dependents import POLICY_KINDS, SUPPORTED_TARGETS
from webhook.core.findings import Code
from webhook.core.kinds import BY_KIND, SYSTEM_NAMESPACES, not_self
from webhook.core.model import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    GATEWAY_NAME_LABEL,
    INBOUND_BINDING,
    MANAGED_BY_GATEWAY,
    MESH_PORT,
    MESH_PROTOCOL,
    NAME_OVERRIDE,
    USE_WAYPOINT,
    USE_WAYPOINT_NAMESPACE,
    WAYPOINT_FOR,
    WAYPOINT_FOR_VALUES,
    WAYPOINT_SERVICE_MANAGERS,
)
from webhook.core.rules.context import DEFAULT_WAYPOINT_CLASSES

API_VERSION = "admissionregistration.k8s.io/v1"
EXCLUDED = (*SYSTEM_NAMESPACES, "waypoint-webhook")  # as the default install's namespaceSelector
NOT_A_NODE = "!request.userInfo.username.startsWith('system:node:')"


def one_line(expr: str) -> str:
    """A value shown in a message: the API server discards a message with a line break, and the
    denial would no longer start with its code."""
    return f"{expr}.replace('\\n', ' ').replace('\\r', ' ')"


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(items: Any) -> str:
    return "[" + ", ".join(_q(i) for i in sorted(items)) + "]"


def has_label(obj: str, key: str, where: str = "labels") -> str:
    return f"has({obj}.metadata.{where}) && {_q(key)} in {obj}.metadata.{where}"


def label(obj: str, key: str, where: str = "labels") -> str:
    return f"{obj}.metadata.{where}[{_q(key)}]"


def unchanged(*keys: str, where: str = "labels") -> str:
    """On UPDATE, the keys hold what the old object held (B1: a pre-existing problem is a warning)."""
    parts = [
        f"({has_label('oldObject', k, where)} ? ({has_label('object', k, where)} && "
        f"{label('oldObject', k, where)} == {label('object', k, where)}) : !({has_label('object', k, where)}))"
        for k in keys
    ]
    return f"(request.operation == 'UPDATE' && oldObject != null && {' && '.join(parts)})"


def matches(value: str, pattern: str, max_len: int) -> str:
    return f"(size({value}) <= {max_len} && {value}.matches({_q('^' + pattern + '$')}))"


@dataclass(frozen=True)
class Validation:
    code: Code
    expression: str  # true: allowed
    message: str  # a CEL messageExpression, starting with the code

    def render(self) -> dict[str, Any]:
        return {"expression": self.expression, "messageExpression": self.message, "reason": "Invalid"}


def _reference_validations(exempt: str) -> list[Validation]:
    """L1, L2: the own use-waypoint pair on metadata.labels (InvalidUseWaypoint, InvalidUseWaypointNamespace)."""
    name, ns = label("object", USE_WAYPOINT), label("object", USE_WAYPOINT_NAMESPACE)
    pair = unchanged(USE_WAYPOINT, USE_WAYPOINT_NAMESPACE)
    return [
        Validation(
            Code.InvalidUseWaypoint,
            f"{exempt} || !({has_label('object', USE_WAYPOINT)}) || {name} == 'none' || "
            f"{matches(name, DNS1123_SUBDOMAIN, 253)} || {pair}",
            f"'InvalidUseWaypoint: use-waypoint \\'' + {one_line(name)} + '\\' is not a waypoint name; write \\'none\\' "
            "(lowercase) to opt out, or name a Gateway'",
        ),
        Validation(
            Code.InvalidUseWaypointNamespace,
            f"{exempt} || !({has_label('object', USE_WAYPOINT_NAMESPACE)}) || {matches(ns, DNS1123_LABEL, 63)} "
            f"|| {pair}",
            f"'InvalidUseWaypointNamespace: use-waypoint-namespace \\'' + {one_line(ns)} + '\\' is not a namespace name'",
        ),
    ]


def _waypoint_for(kind: str) -> Validation:
    """L3: waypoint-for on a Gateway or GatewayClass."""
    value = label("object", WAYPOINT_FOR)
    return Validation(
        Code.InvalidWaypointFor,
        f"!({has_label('object', WAYPOINT_FOR)}) || {value} in {_list(WAYPOINT_FOR_VALUES)} || "
        f"{unchanged(WAYPOINT_FOR)}",
        f"'InvalidWaypointFor: {kind} waypoint-for \\'' + {one_line(value)} + '\\' is not one of service, workload, all, "
        "none (istiod treats it as none)'",
    )


def _inbound_binding(kind: str) -> Validation:
    """P1: ``<PROXY|NONE>`` or ``<PROXY|NONE>/<port>`` with a port 1 to 65535 (istiod reads larger
    ones too, but they bind no listener: revision 3)."""
    value = label("object", INBOUND_BINDING, "annotations")
    port_ok = f"(!{value}.contains('/') || int({value}.substring({value}.indexOf('/') + 1)) <= 65535)"
    return Validation(
        Code.InvalidInboundBinding,
        f"!({has_label('object', INBOUND_BINDING, 'annotations')}) || "
        f"({value}.matches('^(PROXY|NONE)(/0*[1-9][0-9]{{0,4}})?$') && {port_ok}) || "
        f"{unchanged(INBOUND_BINDING, where='annotations')}",
        f"'InvalidInboundBinding: {kind} {INBOUND_BINDING} \\'' + {one_line(value)} + '\\' is not <PROXY|NONE> or "
        "<PROXY|NONE>/<port>'",
    )


def _gateway_validations() -> list[Validation]:
    """W2, W3 for Gateways of the built-in waypoint classes (a class that is a waypoint class by
    its controllerName needs state: only the webhook judges it)."""
    waypoint = f"object.spec.gatewayClassName in {_list(DEFAULT_WAYPOINT_CLASSES)}"
    # W2: an unmanaged waypoint (its spec.addresses) is deployed by nobody, so no name is checked.
    unmanaged = (
        "(has(object.spec.addresses) && (size(object.spec.addresses) > 1 || "
        "object.spec.addresses.exists(a, has(a.type) && a.type != 'IPAddress')))"
    )
    overridden = has_label("object", NAME_OVERRIDE, "annotations")
    deployed = f"({overridden} ? {label('object', NAME_OVERRIDE, 'annotations')} : object.metadata.name)"
    same_name = (
        f"(request.operation == 'UPDATE' && oldObject != null && "
        f"({has_label('oldObject', NAME_OVERRIDE, 'annotations')} ? "
        f"{label('oldObject', NAME_OVERRIDE, 'annotations')} : oldObject.metadata.name) == {deployed})"
    )
    return [
        _waypoint_for("Gateway"),
        _inbound_binding("Gateway"),
        Validation(
            Code.InvalidWaypointName,
            f"!({waypoint}) || {unmanaged} || (size(object.metadata.name) <= 63 && "
            f"size(object.spec.gatewayClassName) <= 63 && ({deployed} == '' || "
            f"({deployed} != 'none' && {matches(deployed, DNS1035_LABEL, 63)}))) || {same_name}",
            f"'InvalidWaypointName: the waypoint\\'s Deployment would be named \\'' + {one_line(deployed)} + '\\': it must "
            "be a DNS-1035 label (a-z, 0-9, \\'-\\', at most 63), not \\'none\\', and the Gateway\\'s and its class\\'s "
            "names at most 63 characters'",
        ),
        Validation(
            Code.MissingMeshListener,
            f"!({waypoint}) || object.spec.listeners.exists(l, l.port == {MESH_PORT} && "
            f"l.protocol == {_q(MESH_PROTOCOL)}) || (request.operation == 'UPDATE' && oldObject != null && "
            "oldObject.spec.listeners == object.spec.listeners)",
            "'MissingMeshListener: add listener {name: mesh, port: 15008, protocol: HBONE}'",
        ),
    ]


def _policy_target() -> Validation:
    """Z1, Z7, Z12: each targetRefs entry names one of the four supported (group, kind) pairs, no
    namespace, and no Service of an EnvoyFilter (the singular targetRef and GatewayClass targets
    from outside the root namespace are the webhook's alone: the root namespace is configuration)."""
    supported = _list(f"{g}/{k}" for g, k in SUPPORTED_TARGETS)
    ok = (
        f"((has(t.group) ? t.group : '') + '/' + t.kind) in {supported} && "
        "!(has(t.namespace) && t.namespace != '') && "
        "!(request.kind.kind == 'EnvoyFilter' && t.kind in ['Service', 'ServiceEntry'])"
    )
    same = (
        "(request.operation == 'UPDATE' && oldObject != null && has(oldObject.spec) && "
        "has(oldObject.spec.targetRefs) && oldObject.spec.targetRefs == object.spec.targetRefs)"
    )
    return Validation(
        Code.InvalidPolicyTarget,
        f"!has(object.spec) || !has(object.spec.targetRefs) || object.spec.targetRefs.all(t, {ok}) || {same}",
        "'InvalidPolicyTarget: targetRefs can name only a Gateway or GatewayClass (gateway.networking.k8s.io), a "
        "Service (empty group) or a ServiceEntry (networking.istio.io) of the policy\\'s namespace; an EnvoyFilter "
        "never applies to a Service'",
    )


# R0 and B1: what the webhook never denies.
_R0_SERVICE = (
    f"((has(object.spec.type) && object.spec.type == 'ExternalName') || ({has_label('object', MANAGED_BY_GATEWAY)} "
    f"&& {label('object', MANAGED_BY_GATEWAY)} in {_list(WAYPOINT_SERVICE_MANAGERS)}))"
)
_GATEWAY_INSTANCE = f"({has_label('object', GATEWAY_NAME_LABEL)})"  # maybe a Gateway's own: only the webhook knows
_CONTROLLED_POD = (
    "(request.operation == 'CREATE' && has(object.metadata.ownerReferences) && "
    "object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller))"
)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    kinds: tuple[str, ...]
    validations: tuple[Validation, ...]


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec("gateways", ("Gateway",), tuple(_gateway_validations())),
    PolicySpec("gatewayclasses", ("GatewayClass",), (_waypoint_for("GatewayClass"), _inbound_binding("GatewayClass"))),
    PolicySpec("services", ("Service",), tuple(_reference_validations(_R0_SERVICE))),
    PolicySpec("pods", ("Pod",), tuple(_reference_validations(f"{_GATEWAY_INSTANCE} || {_CONTROLLED_POD}"))),
    PolicySpec("namespaces", ("Namespace", "ServiceEntry"), tuple(_reference_validations("false"))),
    PolicySpec("workloadentries", ("WorkloadEntry",), tuple(_reference_validations(_GATEWAY_INSTANCE))),
    PolicySpec("policies", tuple(sorted(POLICY_KINDS)), (_policy_target(),)),
)
# The codes the policies enforce: every deny rule that needs no state (tests/unit/test_policy.py).
ENFORCED = frozenset(v.code for p in POLICIES for v in p.validations)


def _rules(kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for kind in kinds:
        k = BY_KIND[kind]
        out.append(
            {
                "apiGroups": [k.group],
                "apiVersions": list(k.versions),
                "resources": [k.resource],
                "operations": ["CREATE", "UPDATE"],
                "scope": k.scope,
            }
        )
    return out


def documents(excluded: Sequence[str] | str = EXCLUDED) -> list[dict[str, Any]]:
    """The policies and their bindings, excluding the same namespaces and the same objects (the
    webhook's own, by label) as the webhook configurations."""
    values = excluded if isinstance(excluded, str) else list(excluded)  # a str: a template's expression
    docs: list[dict[str, Any]] = []
    for p in POLICIES:
        name = f"waypoint-webhook-{p.name}"
        docs.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {"matchPolicy": "Equivalent", "resourceRules": _rules(p.kinds)},
                    "matchConditions": [{"name": "not-a-node", "expression": NOT_A_NODE}],
                    "validations": [v.render() for v in p.validations],
                },
            }
        )
        docs.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": values}
                            ]
                        },
                        "objectSelector": not_self(),
                    },
                },
            }
        )
    return docs
