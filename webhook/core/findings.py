"""Findings: what the rules say about an object, and how severe each is (docs/rules.md B1).

Rules never decide the final severity. They emit a :class:`Finding` with the code's *intrinsic*
default; :class:`Policy` then applies the preset, per-code overrides and the caps that depend on
the request (inherited references, controller-owned Pods, pre-existing problems on UPDATE).
Keeping that split means the rule tables test Istio semantics and the policy tests test
configuration, each on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


class Severity(enum.IntEnum):
    """Ordered so that ``min`` caps a severity and ``max`` picks the worst."""

    OFF = 0
    WARN = 1
    DENY = 2

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return {"off": cls.OFF, "warn": cls.WARN, "deny": cls.DENY}[text.strip().lower()]
        except KeyError:
            raise ValueError(f"severity must be deny, warn or off, not {text!r}") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, kw_only=True)
class CodeInfo:
    default: Severity
    summary: str
    strict_deny: bool = False  # marked † in docs/rules.md B1: becomes deny under the strict preset
    # False for a code no configuration may change: a malformed object is never admitted.
    overridable: bool = True


class Code(enum.StrEnum):
    """Every finding code. Its default severity, whether the strict preset makes it a denial (†
    in docs/rules.md B1) and what it means are in :data:`CODES`, which must name every member
    (checked at import). A typo in a rule is an AttributeError at import and a mypy error, never a
    KeyError while answering a request. The value is the name, so a code compares equal to its
    string and serialises as one."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
        return name

    InvalidWaypointFor = enum.auto()
    InvalidWaypointName = enum.auto()
    MissingMeshListener = enum.auto()
    UnexpectedListener = enum.auto()
    InvalidAllowedRoutes = enum.auto()
    InvalidInboundBinding = enum.auto()
    InboundBindingUnmatched = enum.auto()
    WaypointAcceptsNoTraffic = enum.auto()
    ListenerSetOnWaypoint = enum.auto()
    WaypointPodLabelOverride = enum.auto()
    WaypointInUse = enum.auto()
    ConsumersWouldBreak = enum.auto()
    InvalidUseWaypoint = enum.auto()
    InvalidUseWaypointNamespace = enum.auto()
    OrphanUseWaypointNamespace = enum.auto()
    WaypointNotFound = enum.auto()
    WaypointNotReady = enum.auto()
    NotAWaypoint = enum.auto()
    AttachmentDenied = enum.auto()
    UnevaluableAllowedRoutes = enum.auto()
    UnsupportedTrafficType = enum.auto()
    NamespaceWaypointTrafficType = enum.auto()
    NotCaptured = enum.auto()
    CanaryInvalidWeight = enum.auto()
    CanarySameAsPrimary = enum.auto()
    CrossNamespaceWaypointForbidden = enum.auto()
    ServiceEntryNeedsWaypoint = enum.auto()
    InvalidDataplaneMode = enum.auto()
    UseWaypointAnnotation = enum.auto()
    InvalidIngressUseWaypoint = enum.auto()
    StateUnavailable = enum.auto()
    InvalidPolicyTarget = enum.auto()
    PolicyTargetClassNotApplied = enum.auto()
    PolicyTargetNotFound = enum.auto()
    PolicyTargetNotBound = enum.auto()
    PolicyTargetNotIstioWaypoint = enum.auto()
    SelectorPolicyIgnoredByWaypoint = enum.auto()
    ZtunnelAllowRuleDropped = enum.auto()
    ZtunnelAllowsNothing = enum.auto()
    ZtunnelDenyRuleIgnored = enum.auto()
    ZtunnelDenyRuleWidened = enum.auto()
    ZtunnelUnsupportedAction = enum.auto()
    RouteParentNotBound = enum.auto()
    RouteIgnoredByWaypoint = enum.auto()
    RouteParentOtherController = enum.auto()
    RouteParentNotFound = enum.auto()
    PolicyEnforcementLost = enum.auto()
    MalformedObject = enum.auto()

    @property
    def info(self) -> CodeInfo:
        return CODES[self]


# docs/rules.md B1, in table order. The README's table is generated from this (`waypoint-webhook codes`).
CODES: Mapping[Code, CodeInfo] = {
    # Gateways
    Code.InvalidWaypointFor: CodeInfo(
        default=Severity.DENY, summary="waypoint-for on a Gateway or GatewayClass is not service, workload, all or none"
    ),
    Code.InvalidWaypointName: CodeInfo(
        default=Severity.DENY,
        summary="waypoint-class Gateway's deployed name (name-override, else its name) is no DNS-1035 label, or 'none'",
    ),
    Code.MissingMeshListener: CodeInfo(
        default=Severity.DENY, summary="waypoint-class Gateway has no 15008/HBONE listener"
    ),
    Code.UnexpectedListener: CodeInfo(
        default=Severity.WARN, summary="waypoint-class Gateway has a non-15008/HBONE listener"
    ),
    Code.InvalidAllowedRoutes: CodeInfo(
        default=Severity.DENY,
        summary="mesh listener from: Selector without a selector, or one that cannot be evaluated",
    ),
    Code.InvalidInboundBinding: CodeInfo(
        default=Severity.DENY,
        summary="waypoint-inbound-binding is malformed: unknown protocol, a second '/', or a port that is no number",
    ),
    Code.InboundBindingUnmatched: CodeInfo(
        default=Severity.WARN,
        summary="a valid inbound binding selects no listener: the HBONE listener's allowedRoutes apply",
    ),
    Code.WaypointAcceptsNoTraffic: CodeInfo(default=Severity.WARN, summary="effective waypoint-for is none"),
    Code.ListenerSetOnWaypoint: CodeInfo(
        default=Severity.WARN,
        summary="a waypoint-class Gateway allows ListenerSets (spec.allowedListeners): their listeners never serve it",
    ),
    Code.WaypointPodLabelOverride: CodeInfo(
        default=Severity.WARN,
        summary="labels copied to a waypoint's pods include dataplane-mode or sidecar.istio.io/inject",
    ),
    Code.WaypointInUse: CodeInfo(
        default=Severity.WARN, strict_deny=True, summary="DELETE of a waypoint that objects still reference"
    ),
    Code.ConsumersWouldBreak: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="UPDATE of waypoint-for or allowedRoutes would unbind existing consumers",
    ),
    # Consumers
    Code.InvalidUseWaypoint: CodeInfo(
        default=Severity.DENY, summary="use-waypoint is empty, a case variant of none, or no valid Gateway name"
    ),
    Code.InvalidUseWaypointNamespace: CodeInfo(
        default=Severity.DENY, summary="use-waypoint-namespace is not a DNS-1123 label"
    ),
    Code.OrphanUseWaypointNamespace: CodeInfo(
        default=Severity.WARN, summary="use-waypoint-namespace without use-waypoint on the same object"
    ),
    Code.WaypointNotFound: CodeInfo(
        default=Severity.WARN, strict_deny=True, summary="the referenced waypoint Gateway does not exist (yet)"
    ),
    Code.WaypointNotReady: CodeInfo(
        default=Severity.WARN, summary="the waypoint has no status.addresses yet, or none the data plane can use"
    ),
    Code.NotAWaypoint: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="the referenced Gateway's class is not a waypoint class, and it is no sandwich",
    ),
    Code.AttachmentDenied: CodeInfo(
        default=Severity.DENY, summary="the waypoint's allowedRoutes do not admit the consumer's namespace"
    ),
    Code.UnevaluableAllowedRoutes: CodeInfo(
        default=Severity.DENY,
        summary="the referenced waypoint's allowedRoutes selector cannot be evaluated: istiod crashes on it",
    ),
    Code.UnsupportedTrafficType: CodeInfo(
        default=Severity.DENY, summary="the waypoint's waypoint-for does not serve this kind of object"
    ),
    Code.NamespaceWaypointTrafficType: CodeInfo(
        default=Severity.WARN, summary="a Namespace's waypoint will not serve its Services"
    ),
    Code.NotCaptured: CodeInfo(
        default=Severity.WARN, summary="the consumer is not captured by ambient, so no waypoint applies"
    ),
    Code.CanaryInvalidWeight: CodeInfo(
        default=Severity.DENY, summary="use-waypoint-canary-weight is not an integer 0-100 while a canary is named"
    ),
    Code.CanarySameAsPrimary: CodeInfo(default=Severity.WARN, summary="the canary waypoint is the primary waypoint"),
    Code.CrossNamespaceWaypointForbidden: CodeInfo(
        default=Severity.DENY,
        summary="a ServiceEntry of visibility NAMESPACE (MeshConfig) binds a waypoint in another namespace",
    ),
    Code.ServiceEntryNeedsWaypoint: CodeInfo(
        default=Severity.WARN,
        summary="a ServiceEntry that only works through a waypoint (wildcard host, DYNAMIC_DNS, racing) has none",
    ),
    Code.InvalidDataplaneMode: CodeInfo(
        default=Severity.WARN, summary="istio.io/dataplane-mode is not ambient or none"
    ),
    Code.UseWaypointAnnotation: CodeInfo(
        default=Severity.WARN, summary="use-waypoint(-namespace) set as an annotation, which Istio ignores"
    ),
    Code.InvalidIngressUseWaypoint: CodeInfo(
        default=Severity.WARN, summary="istio.io/ingress-use-waypoint is not true or false"
    ),
    Code.StateUnavailable: CodeInfo(
        default=Severity.WARN, summary="cluster state is not synced; only syntax checks ran"
    ),
    # Policies that need a waypoint (A7): never denied for cluster state, only for what never applies.
    Code.InvalidPolicyTarget: CodeInfo(
        default=Severity.DENY,
        summary="a policy's targetRef can never apply: kind/group, namespace set, GatewayClass misuse, EnvoyFilter",
    ),
    Code.PolicyTargetClassNotApplied: CodeInfo(
        default=Severity.WARN, summary="a policy targets a mesh-controller GatewayClass not named istio-waypoint"
    ),
    Code.PolicyTargetNotFound: CodeInfo(
        default=Severity.WARN, summary="a policy's target Service, ServiceEntry, Gateway or GatewayClass does not exist"
    ),
    Code.PolicyTargetNotBound: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="a policy's target is bound to no working waypoint: the policy is silently not enforced",
    ),
    Code.PolicyTargetNotIstioWaypoint: CodeInfo(
        default=Severity.WARN,
        summary="a policy's target Service is bound to a sandwich or third-party gateway, which never applies it",
    ),
    Code.SelectorPolicyIgnoredByWaypoint: CodeInfo(
        default=Severity.WARN,
        summary="a selector or namespace-wide policy on ambient workloads: waypoints ignore it",
    ),
    Code.ZtunnelAllowRuleDropped: CodeInfo(
        default=Severity.WARN, summary="an ALLOW rule with HTTP attributes or only trustDomains is omitted at ztunnel"
    ),
    Code.ZtunnelAllowsNothing: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="every rule of an ALLOW is omitted at ztunnel: it refuses all connections to its workloads",
    ),
    Code.ZtunnelDenyRuleIgnored: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="a DENY entry made only of HTTP attributes or trustDomains never matches at ztunnel (fails open)",
    ),
    Code.ZtunnelDenyRuleWidened: CodeInfo(
        default=Severity.WARN, summary="a DENY entry mixing L4 and HTTP attributes denies on its L4 part alone"
    ),
    Code.ZtunnelUnsupportedAction: CodeInfo(
        default=Severity.WARN, summary="an AUDIT or CUSTOM action, or dry-run, on a policy ztunnel enforces: no effect"
    ),
    Code.RouteParentNotBound: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="a route's parent Service is bound to no working waypoint: ambient clients ignore the route",
    ),
    Code.RouteIgnoredByWaypoint: CodeInfo(
        default=Severity.WARN,
        summary="a route outside its parent's and its waypoint's namespace: the waypoint ignores it",
    ),
    Code.RouteParentOtherController: CodeInfo(
        default=Severity.WARN, summary="a route's parent is bound to a non-Istio waypoint: istiod writes no status"
    ),
    Code.RouteParentNotFound: CodeInfo(
        default=Severity.WARN, summary="a route's parent Service or ServiceEntry does not exist"
    ),
    Code.PolicyEnforcementLost: CodeInfo(
        default=Severity.WARN,
        strict_deny=True,
        summary="a change unbinds Services whose policies and routes apply only through their waypoint",
    ),
    # The engine's own: an object with a field of the wrong shape cannot be judged at all.
    Code.MalformedObject: CodeInfo(
        default=Severity.DENY,
        summary="a field has the wrong shape (a label that is no string, a list where an object belongs)",
        overridable=False,
    ),
}

if set(CODES) != set(Code):  # pragma: no cover - a development error, caught by any import
    raise RuntimeError(f"codes without CodeInfo: {sorted(set(Code) - set(CODES))}")

PRESETS = ("default", "strict")


@dataclass(frozen=True)
class Finding:
    """One problem with one field of one object.

    ``field`` is the user-facing JSON path (``metadata.labels[istio.io/use-waypoint]``).
    ``triggers`` are the object paths whose values make the finding; on UPDATE a deny is kept
    only when the old object lacked the finding or one of these values changed (docs/rules.md B1).
    ``cap`` bounds the severity: inherited references are reported as warnings at most.
    """

    code: Code
    message: str
    field: str
    triggers: tuple[tuple[str, ...], ...] = ()
    cap: Severity = Severity.DENY

    def capped(self, cap: Severity) -> Finding:
        return replace(self, cap=min(self.cap, cap))


@dataclass(frozen=True, slots=True)
class Judged:
    """A finding with its final severity: the one shape in which every tool reports a finding
    (admission's causes and warnings, ``check``, ``audit``, reports, metrics), with its JSON form
    defined here once."""

    finding: Finding
    severity: Severity

    @property
    def code(self) -> Code:
        return self.finding.code

    @property
    def field(self) -> str:
        return self.finding.field

    @property
    def message(self) -> str:
        return self.finding.message

    def line(self) -> str:
        return f"{self.finding.code}: {self.finding.message}"

    def to_json(self) -> dict[str, str]:
        return {"code": str(self.code), "severity": str(self.severity), "field": self.field, "message": self.message}


def malformed(field_path: str, problem: str) -> Judged:
    """The one finding of an object that cannot be judged at all: a denial no setting changes."""
    return Judged(Finding(Code.MalformedObject, problem, field_path), Severity.DENY)


@dataclass(frozen=True)
class Policy:
    """Severity per code: a preset plus per-code overrides (docs/rules.md B1, B3)."""

    preset: str = "default"
    overrides: Mapping[str, Severity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        unknown = sorted(set(self.overrides) - set(CODES))
        if unknown:
            raise ValueError(f"unknown finding code(s): {', '.join(unknown)}")
        fixed = sorted(c for c in self.overrides if not CODES[Code(c)].overridable)
        if fixed:
            raise ValueError(f"the severity of {', '.join(fixed)} cannot be changed")

    def severity_of(self, code: Code) -> Severity:
        if code in self.overrides:
            return self.overrides[code]
        info = code.info
        if self.preset == "strict" and info.strict_deny:
            return Severity.DENY
        return info.default

    def judge(self, findings: Iterable[Finding], cap: Severity = Severity.DENY) -> list[Judged]:
        out: list[Judged] = []
        for f in findings:
            sev = min(self.severity_of(f.code), f.cap, cap)
            if sev is not Severity.OFF:
                out.append(Judged(f, sev))
        return out


def parse_overrides(items: Iterable[str]) -> dict[str, Severity]:
    """Parse ``Code=deny`` items (flags, env) into overrides, with clear errors."""
    out: dict[str, Severity] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            code, sep, sev = part.partition("=")
            if not sep:
                raise ValueError(f"severity override {part!r} must look like Code=deny|warn|off")
            code = code.strip()
            if code not in CODES:
                raise ValueError(f"unknown finding code {code!r} in severity override")
            if not CODES[Code(code)].overridable:
                raise ValueError(f"the severity of {code} cannot be changed")
            out[code] = Severity.parse(sev)
    return out
