"""The functional core's entry point: an admission request in, a verdict out.

``Engine.validate`` and ``Engine.mutate`` are pure functions of the request, the settings and
the read-only cluster view: no I/O, no API calls. This is where the request-level rules of
docs/rules.md B1 live (UPDATE pre-existing problems, controller-owned Pods, DELETE, exclusions);
the per-object rules live in :mod:`webhook.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.findings import Finding, Judged, Policy, Severity
from webhook.kinds import BY_GROUP_KIND, KindSpec, Role
from webhook.model import (
    Malformed,
    has_controller,
    parse_consumer,
    parse_gateway,
    parse_gateway_class,
)
from webhook.request import AdmissionRequest
from webhook.rules.context import DEFAULT_WAYPOINT_CLASSES, Context
from webhook.rules.defaults import PatchOp, gateway_defaults
from webhook.rules.gateways import judge_gateway, judge_gateway_class
from webhook.rules.registry import DELETE_RULES, UPDATE_RULES, judge_consumer
from webhook.rules.rule import run
from webhook.state.view import ClusterView

DEFAULT_EXCLUDED = frozenset({"kube-system", "kube-node-lease"})


@dataclass(frozen=True)
class Settings:
    policy: Policy = field(default_factory=Policy)
    waypoint_classes: frozenset[str] = DEFAULT_WAYPOINT_CLASSES
    excluded_namespaces: frozenset[str] = DEFAULT_EXCLUDED
    pin_waypoint_for: bool = False  # M2, off by default


@dataclass(frozen=True)
class Verdict:
    """What either webhook answers: findings with their severities, JSON patch operations (the
    mutating webhook's only), and, when the request was not reviewed at all, why (the shell logs it)."""

    judged: list[Judged]
    patch: list[PatchOp]
    skipped: str = ""

    @property
    def allowed(self) -> bool:
        return all(j.severity is not Severity.DENY for j in self.judged)


def skip(reason: str) -> Verdict:
    return Verdict([], [], reason)


def value_at(obj: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


class Engine:
    def __init__(self, view: ClusterView, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.view = view
        self.ctx = Context(view, self.settings.waypoint_classes, self.settings.pin_waypoint_for)

    # -- helpers --
    def _excluded(self, req: AdmissionRequest, spec: KindSpec) -> bool:
        if spec.role is Role.NAMESPACE:
            obj = req.object or req.old_object or {}
            name = value_at(obj, ("metadata", "name"))
            # A name that is not a string is the object's problem: parsing reports it as a 400.
            return (name if isinstance(name, str) and name else req.name) in self.settings.excluded_namespaces
        return req.namespace in self.settings.excluded_namespaces

    def _judge(self, spec: KindSpec, obj: Mapping[str, Any], namespace: str) -> list[Finding]:
        """Findings for one object version. Raises Malformed."""
        if spec.role is Role.GATEWAY:
            return judge_gateway(parse_gateway(obj, namespace), self.ctx)
        if spec.role is Role.CLASS:
            return judge_gateway_class(parse_gateway_class(obj), self.ctx)
        return judge_consumer(parse_consumer(spec.kind, obj, namespace), self.ctx)

    def _relevant(self, req: AdmissionRequest) -> KindSpec | str:
        """The kind's row, or why the request is not reviewed."""
        spec = BY_GROUP_KIND.get((req.kind.group, req.kind.kind))
        if spec is None:
            return f"kind {req.kind.group}/{req.kind.kind} is not handled"
        if req.sub_resource:
            return f"subresource {req.sub_resource}"
        if self._excluded(req, spec):
            return "namespace excluded"
        return spec

    # -- validating webhook --
    def validate(self, req: AdmissionRequest) -> Verdict:
        """Raises Malformed when the (new) object has a field of the wrong shape."""
        kind = self._relevant(req)
        if isinstance(kind, str):
            return skip(kind)
        if req.operation == "DELETE":
            if kind.role is not Role.GATEWAY or req.old_object is None:
                return skip("DELETE of anything but a Gateway with its old object")
            return Verdict(
                self.settings.policy.judge(
                    run(DELETE_RULES, parse_gateway(req.old_object, req.namespace), "Gateway", self.ctx)
                ),
                [],
            )
        if req.operation not in ("CREATE", "UPDATE"):
            return skip(f"operation {req.operation}")
        if req.object is None:
            raise Malformed("object", f"is required for {req.operation}")
        findings = self._judge(kind, req.object, req.namespace)
        cap = Severity.DENY
        if req.operation == "UPDATE" and req.old_object is not None:
            findings = self._downgrade_preexisting(kind, findings, req.object, req.old_object, req.namespace)
            if kind.role is Role.GATEWAY:
                findings += self._gateway_impact(req.object, req.old_object, req.namespace)
        elif (
            req.operation == "CREATE"
            and (kind.kind == "Pod" or kind.role is Role.WORKLOAD)
            and has_controller(value_at(req.object, ("metadata", "ownerReferences")))
        ):
            # B1: a controller creating replicas (or a ReplicaSet/Job) is never blocked; the template
            # was judged when the workload was admitted.
            cap = Severity.WARN
        return Verdict(self.settings.policy.judge(findings, cap), [])

    def _downgrade_preexisting(
        self,
        kind: KindSpec,
        findings: list[Finding],
        new: Mapping[str, Any],
        old: Mapping[str, Any],
        namespace: str,
    ) -> list[Finding]:
        """B1 UPDATE rule: a deny stands only when the request introduces or changes its cause."""
        try:
            before = {(f.code, f.field) for f in self._judge(kind, old, namespace)}
        except Malformed:
            return findings  # nothing comparable in the old object: judge the new one fully
        out = []
        for f in findings:
            unchanged = all(value_at(new, t) == value_at(old, t) for t in f.triggers)
            out.append(f.capped(Severity.WARN) if (f.code, f.field) in before and unchanged else f)
        return out

    def _gateway_impact(self, new: Mapping[str, Any], old: Mapping[str, Any], namespace: str) -> list[Finding]:
        try:
            old_gw = parse_gateway(old, namespace)
        except Malformed:
            return []
        return run(UPDATE_RULES, (old_gw, parse_gateway(new, namespace)), "Gateway", self.ctx)

    # -- mutating webhook --
    def mutate(self, req: AdmissionRequest) -> Verdict:
        """M1/M2 for waypoint Gateways on CREATE and UPDATE; nothing else is ever patched."""
        kind = self._relevant(req)
        if isinstance(kind, str):
            return skip(kind)
        if kind.role is not Role.GATEWAY or req.operation not in ("CREATE", "UPDATE") or req.object is None:
            return skip("only a Gateway's CREATE or UPDATE is mutated")
        return Verdict([], gateway_defaults(req.object, parse_gateway(req.object, req.namespace), self.ctx))
