"""Defaults the mutating webhook fills in (docs/rules.md M1, M2) as minimal, idempotent JSONPatch ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.model import (
    MESH_PORT,
    MESH_PROTOCOL,
    WAYPOINT_FOR,
    WAYPOINT_FOR_VALUES,
    Gateway,
)
from webhook.core.rules.context import Context

PatchOp = dict[str, Any]
MESH_LISTENER: Mapping[str, Any] = {"name": "mesh", "port": MESH_PORT, "protocol": MESH_PROTOCOL}


def escape(key: str) -> str:
    """RFC 6901: ``~`` then ``/`` (``istio.io/waypoint-for`` -> ``istio.io~1waypoint-for``)."""
    return key.replace("~", "~0").replace("/", "~1")


def gateway_defaults(raw: Mapping[str, Any], gw: Gateway, ctx: Context) -> list[PatchOp]:
    if not ctx.is_waypoint_class(gw.class_name):
        return []  # never touch non-waypoint Gateways (W2: by name or by the class's controller)
    ops: list[PatchOp] = []
    if not gw.listeners_present:  # M1: key absent, null, or an empty list
        op = "replace" if isinstance(raw.get("spec", {}).get("listeners"), list) else "add"
        ops.append({"op": op, "path": "/spec/listeners", "value": [dict(MESH_LISTENER)]})
    # M2, only when configured: istiod resolves a missing waypoint-for at run time from the
    # GatewayClass, and `istioctl waypoint generate` leaves it out on purpose, so that a class can
    # change the default later; pinning it would freeze today's value.
    if ctx.pin_waypoint_for and WAYPOINT_FOR not in gw.meta.labels:
        value = _default_waypoint_for(gw, ctx)
        if value is not None:
            meta = raw.get("metadata")
            if not isinstance(meta, dict):  # absent or null: every op must have a parent to add to
                ops.append({"op": "add", "path": "/metadata", "value": {"labels": {WAYPOINT_FOR: value}}})
            elif isinstance(meta.get("labels"), dict):
                ops.append({"op": "add", "path": f"/metadata/labels/{escape(WAYPOINT_FOR)}", "value": value})
            else:
                ops.append({"op": "add", "path": "/metadata/labels", "value": {WAYPOINT_FOR: value}})
    return ops


def _default_waypoint_for(gw: Gateway, ctx: Context) -> str | None:
    """The class's label, else ``service``; None when unknowable (unsynced) or when the class's
    label is illegal, which the GatewayClass's own InvalidWaypointFor reports."""
    if not ctx.view.synced():
        return None
    class_label = ctx.view.class_waypoint_for(gw.class_name)
    if class_label is None:
        return "service"
    return class_label if class_label in WAYPOINT_FOR_VALUES else None


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(obj: dict[str, Any], ops: list[PatchOp]) -> dict[str, Any]:
    """Apply the ``add``/``replace`` ops this module emits, as the API server would, to a copy.

    Used by anything that simulates admission (B2: the offline checker mutates before it
    validates). Only object members are addressed, which is all M1/M2 need.
    """
    import copy

    out = copy.deepcopy(obj)
    for op in ops:
        if op["op"] not in ("add", "replace"):
            raise ValueError(f"unsupported patch op {op['op']!r}")
        *parents, last = [_unescape(t) for t in op["path"].lstrip("/").split("/")]
        node: Any = out
        for token in parents:
            node = node.setdefault(token, {}) if isinstance(node, dict) else node[int(token)]
            if node is None:
                raise ValueError(f"patch path {op['path']} crosses a null")
        node[last] = copy.deepcopy(op["value"])
    return out
