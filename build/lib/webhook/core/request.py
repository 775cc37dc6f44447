"""The admission request as the core sees it: a domain type, free of the wire format.

:mod:`webhook.admission.wire` decodes AdmissionReview JSON into it; the engine, ``check`` and the
audit build it directly. Nothing here knows about HTTP or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.kinds import CLUSTER_SCOPED


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


def stored_request(obj: Mapping[str, Any], uid: str = "stored") -> AdmissionRequest | None:
    """The CREATE admission would have judged ``obj`` by: how ``check`` judges a manifest and the
    audit a stored object. None when it has no apiVersion or kind to judge it by; a metadata of
    the wrong shape is left for the engine to report."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    group, _, version = api_version.rpartition("/")
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return AdmissionRequest(
        uid,
        GroupVersionKind(group, version, kind),
        "CREATE",
        namespace,
        str(meta.get("name") or ""),
        object=dict(obj),
    )
