"""Which requests the API server sends to which webhook entry, and which of those entries may
fail closed: derived from the registry, so an outage blocks only what could have been denied.

A webhook entry's ``failurePolicy`` only matters when the webhook cannot be reached. ``Fail`` then
refuses the request; that is right where the webhook would have denied something, and pure harm
where it could only ever have warned. Each :class:`Route` names the (role, operation) pairs it
sends; the codes those requests can produce are read from the registry's tables (the judge's table
on CREATE/UPDATE, the impact tables on UPDATE and DELETE, the engine's own parse failure), and a
route fails closed exactly when one of those codes is a denial under the configured policy. The
engine caps a controller's CREATE at a warning (docs/rules.md B1), so the routes of replicas never
fail closed, in any preset.

``make generate`` renders the routes into ``manifests/webhooks.yaml`` (default preset), the strict
preset's patch and the Helm chart's template; ``tests/unit/test_routing.py`` checks that what the
CEL sends and what the engine would deny agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from webhook.core import forwarding
from webhook.core.dispatch import ENGINE_CODES, REGISTRY, Registry
from webhook.core.findings import Code, Policy, Severity
from webhook.core.kinds import KINDS, KindSpec, Role

NOT_A_NODE = "!request.userInfo.username.startsWith('system:node:')"
# B1: made by a workload controller (an ownerReference with controller: true), as the engine tests.
OWNED = "has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)"
OWNED_POD_CREATE = f"request.operation == 'CREATE' && request.kind.kind == 'Pod' && {OWNED}"
OWNED_CREATE = f"request.operation == 'CREATE' && {OWNED}"


@dataclass(frozen=True)
class Condition:
    name: str
    expression: str


@dataclass(frozen=True)
class Route:
    """One entry of the ValidatingWebhookConfiguration: the kinds and operations it registers, the
    CEL that narrows them, and the codes its requests can produce."""

    name: str
    kinds: tuple[KindSpec, ...]
    operations: tuple[str, ...]
    conditions: tuple[Condition, ...]
    capped: bool  # the engine never denies these requests (B1: a controller's CREATE)
    why: str  # one line, for the generated YAML and the README's blast-radius table
    # Never Fail, whatever it may deny: a security policy must not wait for this webhook (B1's
    # severity principle); its one stateless denial is also a ValidatingAdmissionPolicy (policies.py).
    fails_open: bool = False

    def codes(self, registry: Registry = REGISTRY) -> frozenset[Code]:
        """Every code a request of this route can produce."""
        out: set[Code] = set()
        for role in {k.role for k in self.kinds}:
            for op in self.operations:
                out |= _codes_of(registry, role, op)
        return frozenset(out)

    def denying_codes(self, policy: Policy, registry: Registry = REGISTRY) -> frozenset[Code]:
        """The codes that would deny one of its requests under ``policy`` (none when capped)."""
        if self.capped:
            return frozenset()
        return frozenset(c for c in self.codes(registry) if policy.severity_of(c) is Severity.DENY)

    def failure_policy(self, policy: Policy, registry: Registry = REGISTRY) -> str:
        """``Fail`` only where an outage would otherwise admit something the webhook denies."""
        return "Fail" if self.denying_codes(policy, registry) and not self.fails_open else "Ignore"


def _codes_of(registry: Registry, role: Role, operation: str) -> frozenset[Code]:
    tables = []
    if operation in ("CREATE", "UPDATE"):
        tables.append(registry.judges[role].table)
    if operation == "UPDATE" and role in registry.on_update:
        tables.append(registry.on_update[role])
    if operation == "DELETE" and role in registry.on_delete:
        tables.append(registry.on_delete[role])
    codes = frozenset(c for t in tables for r in t for c in r.codes)
    # A DELETE never parses to a denial (the engine admits a malformed old object).
    return codes | ENGINE_CODES if operation != "DELETE" else codes


def _kinds(*roles: Role) -> tuple[KindSpec, ...]:
    return tuple(k for k in KINDS if k.role in roles)


_NODE = Condition("not-a-node", NOT_A_NODE)
_CONSUMER = Condition("carries-waypoint-labels", forwarding.consumer_condition())
_TEMPLATE = Condition("template-carries-waypoint-labels", forwarding.template_condition())
_SERVICE_PARENT = Condition("has-a-service-parent", forwarding.route_condition())

ROUTES: tuple[Route, ...] = (
    Route(
        "gateways.validate.waypoint-webhook.io",
        _kinds(Role.GATEWAY, Role.CLASS),
        ("CREATE", "UPDATE"),
        (_NODE,),
        False,
        "every Gateway and GatewayClass write (a waypoint is decided by its class's controller)",
    ),
    Route(
        "gateway-deletes.validate.waypoint-webhook.io",
        _kinds(Role.GATEWAY),
        ("DELETE",),
        (_NODE,),
        False,
        "Gateway deletes (WaypointInUse, a warning unless strict)",
    ),
    Route(
        "consumers.validate.waypoint-webhook.io",
        _kinds(Role.NAMESPACE, Role.CONSUMER),
        ("CREATE", "UPDATE"),
        (_NODE, Condition("not-a-replica", f"!({OWNED_POD_CREATE})"), _CONSUMER),
        False,
        "consumers carrying waypoint keys, but a controller's new Pods",
    ),
    Route(
        "replicas.validate.waypoint-webhook.io",
        tuple(k for k in KINDS if k.kind == "Pod"),
        ("CREATE",),
        (_NODE, Condition("a-replica", OWNED), _CONSUMER),
        True,
        "a controller's new Pods carrying waypoint keys (never denied, B1)",
    ),
    Route(
        "workloads.validate.waypoint-webhook.io",
        _kinds(Role.WORKLOAD),
        ("CREATE", "UPDATE"),
        (Condition("not-a-controllers-create", f"!({OWNED_CREATE})"), _TEMPLATE),
        False,
        "workloads whose pod template carries waypoint keys, but a controller's new ones",
    ),
    Route(
        "owned-workloads.validate.waypoint-webhook.io",
        _kinds(Role.WORKLOAD),
        ("CREATE",),
        (Condition("a-controllers-create", OWNED), _TEMPLATE),
        True,
        "ReplicaSets and Jobs a controller creates (never denied, B1)",
    ),
    Route(
        "policies.validate.waypoint-webhook.io",
        _kinds(Role.POLICY),
        ("CREATE", "UPDATE"),
        (_NODE,),
        False,
        "policies that need a waypoint (A7); fail open, InvalidPolicyTarget is also a ValidatingAdmissionPolicy",
        fails_open=True,
    ),
    Route(
        "routes.validate.waypoint-webhook.io",
        _kinds(Role.ROUTE),
        ("CREATE", "UPDATE"),
        (_NODE, _SERVICE_PARENT),
        False,
        "routes with a Service or ServiceEntry parent (A7, warnings only); fail open",
        fails_open=True,
    ),
)

MUTATE = Route(
    "gateways.mutate.waypoint-webhook.io",
    _kinds(Role.GATEWAY),
    ("CREATE", "UPDATE"),
    (_NODE,),
    True,
    "defaults only (M1): the validating entries check the final object",
)


def blocked_in_outage(policy: Policy, routes: Iterable[Route] = ROUTES) -> Iterator[Route]:
    """The routes an outage blocks under ``policy``: what the README's blast radius lists."""
    return (r for r in routes if r.failure_policy(policy) == "Fail")
