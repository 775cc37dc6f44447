"""What the continuous audit publishes about itself: one typed record, written by the auditor
process and read by every worker's ``/metrics``.

The two sides run in different processes (and shells that do not import each other), so the
record and its JSON form live here, once: the auditor never writes a key the collector does not
read, and the collector never indexes a row by position. Reading is forgiving: a torn or
hand-edited file gives the fields it can, never an exception on the metrics path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = ("create", "update", "delete", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingCount:
    """How many findings of one code and severity the audit holds for one kind in one namespace."""

    code: str
    severity: str
    kind: str
    namespace: str
    count: int

    def to_json(self) -> list[Any]:
        return [self.code, self.severity, self.kind, self.namespace, self.count]

    @classmethod
    def from_json(cls, row: object) -> FindingCount | None:
        if not (isinstance(row, list) and len(row) == 5 and all(isinstance(v, str) for v in row[:4])):
            return None
        n = row[4]
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            return None
        return cls(code=row[0], severity=row[1], kind=row[2], namespace=row[3], count=int(n))


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditStatus:
    """One snapshot of the auditor: freshness, progress, leadership and what it found."""

    updated: float
    synced: bool = False
    pid: int = 0
    last_full_pass: float = 0.0
    full_pass_seconds: float = 0.0
    incremental_seconds: float = 0.0
    objects: int = 0
    leader: bool = False
    standby: bool = False  # waiting for the Lease, holding no view: healthy, audits nothing
    reports_available: bool | None = None  # unknown until the leader has looked
    reports_api: str = ""  # the apiVersion reports are written as ("" while none is)
    writes: Mapping[str, int] = field(default_factory=dict)
    findings: tuple[FindingCount, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "updated": self.updated,
            "synced": self.synced,
            "last_full_pass": self.last_full_pass,
            "full_pass_seconds": self.full_pass_seconds,
            "incremental_seconds": self.incremental_seconds,
            "objects": self.objects,
            "leader": self.leader,
            "standby": self.standby,
            "reports_available": self.reports_available,
            "reports_api": self.reports_api,
            "writes": dict(self.writes),
            "findings": [f.to_json() for f in self.findings],
        }

    @classmethod
    def from_json(cls, data: object) -> AuditStatus | None:
        """The record, or None when ``data`` is no status at all; unusable fields get defaults and
        torn finding rows are skipped."""
        if not isinstance(data, dict) or not isinstance(data.get("updated"), (int, float)):
            return None
        writes = data.get("writes")
        rows = data.get("findings")
        available = data.get("reports_available")
        return cls(
            updated=float(data["updated"]),
            synced=data.get("synced") is True,
            pid=int(_number(data, "pid")),
            last_full_pass=_number(data, "last_full_pass"),
            full_pass_seconds=_number(data, "full_pass_seconds"),
            incremental_seconds=_number(data, "incremental_seconds"),
            objects=int(_number(data, "objects")),
            leader=data.get("leader") is True,
            standby=data.get("standby") is True,
            reports_available=available if isinstance(available, bool) else None,
            reports_api=str(data.get("reports_api") or ""),
            writes={
                str(k): int(v)
                for k, v in (writes.items() if isinstance(writes, dict) else ())
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            },
            findings=tuple(f for f in map(FindingCount.from_json, rows if isinstance(rows, list) else ()) if f),
        )
