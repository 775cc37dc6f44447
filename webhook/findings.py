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


@dataclass(frozen=True)
class CodeInfo:
    default: Severity
    strict_deny: bool  # marked † in docs/rules.md B1: becomes deny under the strict preset
    summary: str


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
    InvalidDataplaneMode = enum.auto()
    UseWaypointAnnotation = enum.auto()
    InvalidIngressUseWaypoint = enum.auto()
    StateUnavailable = enum.auto()

    @property
    def info(self) -> CodeInfo:
        return CODES[self]


# docs/rules.md B1, in table order. The README's table is generated from this (`waypoint-webhook codes`).
CODES: Mapping[Code, CodeInfo] = {
    # Gateways
    Code.InvalidWaypointFor: CodeInfo(
        Severity.DENY, False, "waypoint-for on a Gateway or GatewayClass is not service, workload, all or none"
    ),
    Code.InvalidWaypointName: CodeInfo(
        Severity.DENY,
        False,
        "waypoint-class Gateway's deployed name (name-override, else its name) is no DNS-1035 label, or 'none'",
    ),
    Code.MissingMeshListener: CodeInfo(Severity.DENY, False, "waypoint-class Gateway has no 15008/HBONE listener"),
    Code.UnexpectedListener: CodeInfo(Severity.WARN, False, "waypoint-class Gateway has a non-15008/HBONE listener"),
    Code.InvalidAllowedRoutes: CodeInfo(
        Severity.DENY, False, "mesh listener from: Selector without a selector, or one that cannot be evaluated"
    ),
    Code.InvalidInboundBinding: CodeInfo(
        Severity.DENY,
        False,
        "waypoint-inbound-binding is malformed: unknown protocol, a second '/', or a port that is no number",
    ),
    Code.InboundBindingUnmatched: CodeInfo(
        Severity.WARN, False, "a valid inbound binding selects no listener: the HBONE listener's allowedRoutes apply"
    ),
    Code.WaypointAcceptsNoTraffic: CodeInfo(Severity.WARN, False, "effective waypoint-for is none"),
    Code.WaypointPodLabelOverride: CodeInfo(
        Severity.WARN, False, "labels copied to a waypoint's pods include dataplane-mode or sidecar.istio.io/inject"
    ),
    Code.WaypointInUse: CodeInfo(Severity.WARN, True, "DELETE of a waypoint that objects still reference"),
    Code.ConsumersWouldBreak: CodeInfo(
        Severity.WARN, True, "UPDATE of waypoint-for or allowedRoutes would unbind existing consumers"
    ),
    # Consumers
    Code.InvalidUseWaypoint: CodeInfo(
        Severity.DENY, False, "use-waypoint is empty, a case variant of none, or no valid Gateway name"
    ),
    Code.InvalidUseWaypointNamespace: CodeInfo(Severity.DENY, False, "use-waypoint-namespace is not a DNS-1123 label"),
    Code.OrphanUseWaypointNamespace: CodeInfo(
        Severity.WARN, False, "use-waypoint-namespace without use-waypoint on the same object"
    ),
    Code.WaypointNotFound: CodeInfo(Severity.WARN, True, "the referenced waypoint Gateway does not exist (yet)"),
    Code.WaypointNotReady: CodeInfo(
        Severity.WARN, False, "the waypoint has no status.addresses yet, or none the data plane can use"
    ),
    Code.NotAWaypoint: CodeInfo(
        Severity.WARN, True, "the referenced Gateway's class is not a waypoint class, and it is no sandwich"
    ),
    Code.AttachmentDenied: CodeInfo(
        Severity.DENY, False, "the waypoint's allowedRoutes do not admit the consumer's namespace"
    ),
    Code.UnevaluableAllowedRoutes: CodeInfo(
        Severity.DENY,
        False,
        "the referenced waypoint's allowedRoutes selector cannot be evaluated: istiod crashes on it",
    ),
    Code.UnsupportedTrafficType: CodeInfo(
        Severity.DENY, False, "the waypoint's waypoint-for does not serve this kind of object"
    ),
    Code.NamespaceWaypointTrafficType: CodeInfo(
        Severity.WARN, False, "a Namespace's waypoint will not serve its Services"
    ),
    Code.NotCaptured: CodeInfo(Severity.WARN, False, "the consumer is not captured by ambient, so no waypoint applies"),
    Code.CanaryInvalidWeight: CodeInfo(
        Severity.DENY, False, "use-waypoint-canary-weight is not an integer 0-100 while a canary is named"
    ),
    Code.CanarySameAsPrimary: CodeInfo(Severity.WARN, False, "the canary waypoint is the primary waypoint"),
    Code.InvalidDataplaneMode: CodeInfo(Severity.WARN, False, "istio.io/dataplane-mode is not ambient or none"),
    Code.UseWaypointAnnotation: CodeInfo(
        Severity.WARN, False, "use-waypoint(-namespace) set as an annotation, which Istio ignores"
    ),
    Code.InvalidIngressUseWaypoint: CodeInfo(
        Severity.WARN, False, "istio.io/ingress-use-waypoint is not true or false"
    ),
    Code.StateUnavailable: CodeInfo(Severity.WARN, False, "cluster state is not synced; only syntax checks ran"),
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


@dataclass(frozen=True)
class Judged:
    """A finding with its final severity."""

    finding: Finding
    severity: Severity

    @property
    def code(self) -> str:
        return self.finding.code

    def line(self) -> str:
        return f"{self.finding.code}: {self.finding.message}"


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
            out[code] = Severity.parse(sev)
    return out
