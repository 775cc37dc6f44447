"""waypoint-webhook: admission webhook for Istio ambient-mode waypoint configuration."""

__version__ = "0.1.0"
