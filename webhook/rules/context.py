"""What every rule may read besides the object: the cluster view and the waypoint classes."""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.model import ISTIO_WAYPOINT_CLASS
from webhook.state.view import ClusterView

DEFAULT_WAYPOINT_CLASSES = frozenset({ISTIO_WAYPOINT_CLASS})


@dataclass(frozen=True)
class Context:
    view: ClusterView
    waypoint_classes: frozenset[str] = field(default=DEFAULT_WAYPOINT_CLASSES)


def path_of(field_prefix: str, *rest: str) -> tuple[str, ...]:
    """Object path for a trigger: ``path_of("spec.template.metadata", "labels", k)``."""
    return (*field_prefix.split("."), *rest)
