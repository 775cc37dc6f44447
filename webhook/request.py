"""The admission request as the core sees it: a domain type, free of the wire format.

:mod:`webhook.admission` decodes AdmissionReview JSON into it; the engine, ``check`` and the
audit build it directly. Nothing here knows about HTTP or JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: str = ""
    name: str = ""
    sub_resource: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False
    user: str = ""
