"""The read-only cluster view the rules consult, and the records it holds.

Two backends implement :class:`ClusterView`: :mod:`webhook.cluster.files` (YAML files: the
embedded default and the test fixture) and :mod:`webhook.cluster.live` (a watch-backed cache).
Both keep only the few fields the rules need, never whole objects, so memory stays flat
as the cluster grows and no admission ever calls the API server (docs/rules.md C).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from webhook.core.model import (
    DATAPLANE_MODE,
    NAMESPACE_NAME_LABEL,
    SAME_NAMESPACE,
    AllowedRoutes,
    Gateway,
    Listener,
    MeshConfig,
    binding_of,
    consulted_listener,
)


@dataclass(frozen=True, slots=True)
class WaypointInfo:
    """A Gateway as binding sees it (W1, L3, P1)."""

    namespace: str
    name: str
    class_name: str
    waypoint_for: str | None  # the Gateway's own label, None when absent
    ready: bool
    listeners: tuple[Listener, ...]
    usable: bool = True  # W1: has an address the data plane can use
    ambient_pods: bool = False  # W5/W6: its copied labels put its own pods in ambient
    inbound_binding: str | None = None  # its waypoint-inbound-binding annotation (P1, W6)

    @classmethod
    def of(cls, gw: Gateway) -> WaypointInfo:
        return cls(
            gw.meta.namespace,
            gw.meta.name,
            gw.class_name,
            gw.waypoint_for,
            gw.ready,
            gw.listeners,
            gw.usable,
            gw.copied_labels.get(DATAPLANE_MODE) == "ambient",
            gw.inbound_binding,
        )

    def routes(self, class_binding: str | None) -> AllowedRoutes:
        """P1: the consulted listener's allowedRoutes; the binding may come from the class."""
        listener, _ = consulted_listener(self.listeners, binding_of(self.inbound_binding, class_binding))
        return listener.routes if listener else SAME_NAMESPACE


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """A GatewayClass as the rules see it (L3, W2, W6)."""

    waypoint_for: str | None
    controller: str = ""
    inbound_binding: str | None = None


@dataclass(frozen=True, slots=True)
class ConsumerRef:
    """An object whose own labels reference a waypoint (Namespaces included)."""

    kind: str
    namespace: str  # the namespace whose permission counts (P4)
    name: str
    traffic: frozenset[str]
    detail: str = ""  # e.g. "spec.endpoints[2]" for a ServiceEntry endpoint (R4)

    def order(self) -> tuple[str, str, str, str]:
        return (self.kind, self.namespace, self.name, self.detail)

    def display(self) -> str:
        base = f"{self.kind} {self.name}" if self.kind == "Namespace" else f"{self.kind} {self.namespace}/{self.name}"
        return f"{base} {self.detail}" if self.detail else base


@dataclass(frozen=True, slots=True)
class DependentRef:
    """A policy or route that applies only through a target's waypoint (A7), as the impact
    findings name it. ``fail_open``: an AuthorizationPolicy whose action a waypoint enforces
    (ALLOW, DENY, CUSTOM), whose Service is open when it stops applying (Z14)."""

    kind: str
    namespace: str
    name: str
    fail_open: bool = False

    def order(self) -> tuple[bool, str, str, str]:
        return (not self.fail_open, self.kind, self.namespace, self.name)

    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" + (" (fail-open)" if self.fail_open else "")


class ClusterView(Protocol):
    def synced(self) -> bool:
        """True once the view reflects the cluster; rules needing state report
        StateUnavailable until then."""
        ...

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        """Labels of a namespace; an unknown one has only its name label (issue 2, item 3)."""
        ...

    def namespace_annotations(self, name: str) -> Mapping[str, str]:
        """The annotations of a namespace that the rules read (the canary weight, R6)."""
        ...

    def gateway(self, namespace: str, name: str) -> WaypointInfo | None: ...

    def class_waypoint_for(self, class_name: str) -> str | None:
        """The GatewayClass's waypoint-for label; None when absent or the class is unknown."""
        ...

    def gateway_class(self, class_name: str) -> ClassInfo | None:
        """The GatewayClass, when it is known."""
        ...

    def consumers_of(self, namespace: str, name: str) -> Sequence[ConsumerRef]:
        """Objects referencing this waypoint, unordered, in O(their number)."""
        ...

    def service_entries_of(self, namespace: str) -> Sequence[tuple[tuple[str, str], ConsumerRef]]:
        """The ServiceEntries of ``namespace`` with their own service waypoint reference (V1)."""
        ...

    def service_labels(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        """A Service or ServiceEntry's labels that decide its binding; None when it does not exist (A7)."""
        ...

    def dependents_of(self, kind: str, namespace: str, name: str) -> Sequence[DependentRef]:
        """The policies and routes that target this Service, ServiceEntry or Gateway (A7), unordered,
        in O(their number)."""
        ...

    def targeted_in(self, namespace: str) -> Sequence[tuple[str, str]]:
        """The (kind, name) of the Services and ServiceEntries of ``namespace`` that policies or
        routes target: what a Namespace relabel can take out of enforcement."""
        ...

    def gateways_of_class(self, class_name: str) -> Sequence[WaypointInfo]:
        """The Gateways of a class (a GatewayClass change is rare: O(Gateways) is fine)."""
        ...

    def mesh_config(self) -> MeshConfig | None:
        """istiod's MeshConfig when the backend knows it; None when it does not (V1 cannot run)."""
        ...


def default_namespace_labels(name: str) -> Mapping[str, str]:
    return {NAMESPACE_NAME_LABEL: name}
