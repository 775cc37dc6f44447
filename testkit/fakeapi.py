"""The two response types of the kubernetes client that ``webhook.kube.api.call`` reads, for the
in-memory API servers of the unit tier (Leases, PolicyReports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Raw:
    """A urllib3 response as ``call_api(...).response`` gives it."""

    status: int
    data: bytes

    def release_conn(self) -> None:
        pass


@dataclass
class Call:
    response: Raw
