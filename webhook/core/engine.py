"""The functional core's entry point: an admission request in, a verdict out.

``Engine.validate`` and ``Engine.mutate`` are pure functions of the request, the settings and
the read-only cluster view: no I/O, no API calls. This is where the request-level rules of
docs/rules.md B1 live (UPDATE pre-existing problems, controller-owned Pods, DELETE, exclusions);
the per-object rules live in :mod:`webhook.core.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core import dispatch
from webhook.core.dispatch import Judge, Registry
from webhook.core.findings import Code, Finding, Judged, Policy, Severity
from webhook.core.kinds import BY_GROUP_KIND, SYSTEM_NAMESPACES, KindSpec, Role
from webhook.core.model import Malformed, has_controller
from webhook.core.request import AdmissionRequest
from webhook.core.rules.context import DEFAULT_WAYPOINT_CLASSES, Context
from webhook.core.rules.defaults import PatchOp, gateway_defaults
from webhook.core.rules.rule import run
from webhook.core.view import ClusterView

DEFAULT_EXCLUDED = frozenset(SYSTEM_NAMESPACES)


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
    """``registry`` is the rule dispatcher (:mod:`webhook.core.dispatch`); tests pass their own."""

    def __init__(self, view: ClusterView, settings: Settings | None = None, registry: Registry | None = None) -> None:
        self.settings = settings or Settings()
        self.view = view
        self.registry = registry or dispatch.REGISTRY
        # The configuration every judgement starts from; each one gets a fresh copy (Judge.findings).
        self.ctx = Context(view, self.settings.waypoint_classes, self.settings.pin_waypoint_for)

    # -- helpers --
    def _excluded(self, req: AdmissionRequest, spec: KindSpec) -> bool:
        if spec.role is Role.NAMESPACE:
            obj = req.object or req.old_object or {}
            name = value_at(obj, ("metadata", "name"))
            # A name that is not a string is the object's problem: parsing reports it as a 400.
            return (name if isinstance(name, str) and name else req.name) in self.settings.excluded_namespaces
        return req.namespace in self.settings.excluded_namespaces

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
        spec = self._relevant(req)
        if isinstance(spec, str):
            return skip(spec)
        if req.operation == "DELETE":
            return self._delete(spec, req)
        if req.operation not in ("CREATE", "UPDATE"):
            return skip(f"operation {req.operation}")
        if req.object is None:
            raise Malformed("object", f"is required for {req.operation}")
        judge = self.registry.judges[spec.role]
        cap = Severity.WARN if controllers_create(spec, req) else Severity.DENY
        try:
            new = judge.parse(spec.kind, req.object, req.namespace)  # once per request
        except Malformed as e:
            if cap is Severity.DENY:
                raise
            return Verdict(self.settings.policy.judge([Finding(Code.MalformedObject, e.problem, e.field)], cap), [])
        findings = judge.findings(new, self.ctx)
        if req.operation == "UPDATE" and req.old_object is not None:
            findings = self._update(spec, judge, new, findings, req)
        return Verdict(self.settings.policy.judge(findings, cap), [])

    def _delete(self, spec: KindSpec, req: AdmissionRequest) -> Verdict:
        table = self.registry.on_delete.get(spec.role)
        if table is None or req.old_object is None:
            return skip("DELETE of anything but a Gateway with its old object")
        try:
            old = self.registry.judges[spec.role].parse(spec.kind, req.old_object, req.namespace)
        except Malformed:
            return skip("DELETE of an object that cannot be parsed: deleting it is always allowed")
        return Verdict(self.settings.policy.judge(run(table, old, spec.kind, self.ctx.fresh())), [])

    def _update(
        self, spec: KindSpec, judge: Judge[Any], new: Any, findings: list[Finding], req: AdmissionRequest
    ) -> list[Finding]:
        """B1 UPDATE rules: pre-existing problems are downgraded, and a waypoint's change is judged
        for what it does to its consumers. The old object is parsed once, for both."""
        assert req.object is not None and req.old_object is not None
        try:
            old = judge.parse(spec.kind, req.old_object, req.namespace)
        except Malformed:
            return findings  # nothing comparable in the old object: judge the new one fully
        findings = downgrade_preexisting(findings, judge.findings(old, self.ctx), req.object, req.old_object)
        table = self.registry.on_update.get(spec.role)
        if table is not None:
            findings += run(table, (old, new), spec.kind, self.ctx.fresh())
        return findings

    # -- mutating webhook --
    def mutate(self, req: AdmissionRequest) -> Verdict:
        """M1/M2 for waypoint Gateways on CREATE and UPDATE; nothing else is ever patched."""
        spec = self._relevant(req)
        if isinstance(spec, str):
            return skip(spec)
        if spec.role is not Role.GATEWAY or req.operation not in ("CREATE", "UPDATE") or req.object is None:
            return skip("only a Gateway's CREATE or UPDATE is mutated")
        gw = self.registry.judges[spec.role].parse(spec.kind, req.object, req.namespace)
        return Verdict([], gateway_defaults(req.object, gw, self.ctx.fresh()))


def controllers_create(spec: KindSpec, req: AdmissionRequest) -> bool:
    """B1: a controller creating replicas (or a ReplicaSet/Job) is never blocked; the template was
    judged when the workload was admitted. The routes of these requests fail open (routing.py)."""
    return (
        req.operation == "CREATE"
        and (spec.kind == "Pod" or spec.role is Role.WORKLOAD)
        and has_controller(value_at(req.object, ("metadata", "ownerReferences")))
    )


def downgrade_preexisting(
    findings: list[Finding], before: list[Finding], new: Mapping[str, Any], old: Mapping[str, Any]
) -> list[Finding]:
    """B1 UPDATE rule: a deny stands only when the request introduces or changes its cause."""
    seen = {(f.code, f.field) for f in before}
    out = []
    for f in findings:
        unchanged = all(value_at(new, t) == value_at(old, t) for t in f.triggers)
        out.append(f.capped(Severity.WARN) if (f.code, f.field) in seen and unchanged else f)
    return out
