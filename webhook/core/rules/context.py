"""What every rule may read besides the object: the cluster view and the waypoint classes."""

from __future__ import annotations

from typing import Any

from webhook.core.model import AGENTGATEWAY_WAYPOINT_CLASS, ISTIO_WAYPOINT_CLASS, WAYPOINT_CONTROLLERS
from webhook.core.view import ClusterView, WaypointInfo

# W2: these names are waypoint classes even when their GatewayClass object is not visible.
DEFAULT_WAYPOINT_CLASSES = frozenset({ISTIO_WAYPOINT_CLASS, AGENTGATEWAY_WAYPOINT_CLASS})


class Context:
    """The cluster view and the configuration the rules read, and ``memo``: what one judgement
    has worked out already (a reference's outcomes, shared by an object's endpoints and its
    canary), empty for each object judged (:meth:`fresh`, called by the dispatcher).

    A slotted class rather than a frozen dataclass: :meth:`fresh` runs for every object judged,
    and a frozen dataclass costs three times as much to build (about 1 µs against 0.3 µs). Nothing
    reassigns its attributes after construction."""

    __slots__ = ("memo", "pin_waypoint_for", "view", "waypoint_classes")

    def __init__(
        self,
        view: ClusterView,
        waypoint_classes: frozenset[str] = DEFAULT_WAYPOINT_CLASSES,
        pin_waypoint_for: bool = False,  # M2 (docs/rules.md B2): off unless configured
        memo: dict[Any, Any] | None = None,
    ) -> None:
        self.view = view
        self.waypoint_classes = waypoint_classes
        self.pin_waypoint_for = pin_waypoint_for
        self.memo: dict[Any, Any] = {} if memo is None else memo

    def fresh(self) -> Context:
        """The same context with an empty memo, for judging one object."""
        return Context(self.view, self.waypoint_classes, self.pin_waypoint_for, {})

    def over(self, view: ClusterView) -> Context:
        """The same configuration over another view (a change laid over this one), empty memo."""
        return Context(view, self.waypoint_classes, self.pin_waypoint_for, {})

    def is_waypoint_class(self, class_name: str) -> bool:
        """W2: by name (built-in or configured), or by the GatewayClass's controllerName, which is
        how istiod decides (a platform team's own class with the mesh controller is one)."""
        if class_name in self.waypoint_classes:
            return True
        info = self.view.gateway_class(class_name)
        return info is not None and info.controller in WAYPOINT_CONTROLLERS

    def is_sandwich(self, gw: WaypointInfo) -> bool:
        """W6: a Gateway of another class serves as a waypoint when its own pods are captured by
        ambient, or when it or its class carries an inbound binding."""
        if gw.ambient_pods or gw.inbound_binding is not None:
            return True
        info = self.view.gateway_class(gw.class_name)
        return info is not None and info.inbound_binding is not None


def path_of(field_prefix: str, *rest: str) -> tuple[str, ...]:
    """Object path for a trigger: ``path_of("spec.template.metadata", "labels", k)``."""
    return (*field_prefix.split("."), *rest)
