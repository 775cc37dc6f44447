"""Effective ``waypoint-for`` and what it serves (docs/rules.md L3, R3)."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.model import SERVICE, WORKLOAD

_SERVES = {
    "service": frozenset({SERVICE}),
    "workload": frozenset({WORKLOAD}),
    "all": frozenset({SERVICE, WORKLOAD}),
    "none": frozenset(),
}


@dataclass(frozen=True)
class WaypointFor:
    """The value istiod uses, where it came from, and the traffic it accepts.

    ``raw`` is the literal label value (or ``service`` by default); an illegal value, ``""``
    included, accepts nothing, exactly like ``none`` (L3).
    """

    raw: str
    source: str  # "gateway", "class" or "default"

    @property
    def serves(self) -> frozenset[str]:
        return _SERVES.get(self.raw, frozenset())


def effective_waypoint_for(gateway_label: str | None, class_label: str | None) -> WaypointFor:
    """L3: the Gateway's label if present, else the GatewayClass's, else ``service``.

    A present-but-empty label does not fall back: presence, not truthiness, decides.
    """
    if gateway_label is not None:
        return WaypointFor(gateway_label, "gateway")
    if class_label is not None:
        return WaypointFor(class_label, "class")
    return WaypointFor("service", "default")
