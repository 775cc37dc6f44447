"""A judged object: the one shape ``check``, ``audit``, the continuous audit and its reports share,
with its JSON form (``check -o json``, ``audit -o json``) defined here once.

Admission answers a request rather than an object (:class:`~webhook.core.engine.Verdict`), but
its findings are the same :class:`~webhook.core.findings.Judged` records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import Judged, Severity
from webhook.core.kinds import CLUSTER_SCOPED

PatchOp = dict[str, Any]


def printable(text: str) -> str:
    """Text as JSON can hold it: a file name's undecodable bytes (kept by Python as surrogates)
    become ``\\xNN`` instead of making the whole document unwritable."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRef:
    """Which object: what a report is scoped to and a line of output names."""

    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    uid: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        kind = str(obj.get("kind") or "")
        namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
        return cls(
            api_version=str(obj.get("apiVersion") or ""),
            kind=kind,
            namespace=namespace,
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
        )

    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One object, judged: its findings at their final severities, the defaults admission would add,
    and where it came from (``file:line``, ``<stdin>:line``, ``cluster``)."""

    ref: ObjectRef
    findings: tuple[Judged, ...] = ()
    patch: tuple[PatchOp, ...] = ()
    source: str = ""
    # Findings a CI suppression (``--suppress``) set aside: reported, never counted.
    suppressed: tuple[Judged, ...] = ()
    # Why admission would never review this object ("" when it would): an excluded namespace, or
    # no waypoint key for the webhooks' matchConditions. istiod reads it all the same.
    not_reviewed: str = ""

    @property
    def allowed(self) -> bool:
        return all(j.severity is not Severity.DENY for j in self.findings)

    def worst(self) -> Severity:
        return max((j.severity for j in self.findings), default=Severity.OFF)

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": self.ref.api_version,
            "kind": self.ref.kind,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "allowed": self.allowed,
            "findings": [j.to_json() for j in self.findings],
            "patch": list(self.patch),
            "source": printable(self.source),
            "suppressed": [j.to_json() for j in self.suppressed],
            "admission": {"reviewed": not self.not_reviewed, "reason": self.not_reviewed},
        }
