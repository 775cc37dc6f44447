"""Cross-namespace permission: may a consumer in namespace N bind to a waypoint? (docs/rules.md P1-P4)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from webhook.core.model import AllowedRoutes
from webhook.core.rules.selectors import matches, selector_problem


class Attachment(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"  # the selector cannot be evaluated (P3: istiod may fail on it)


def routes_problem(routes: AllowedRoutes) -> str | None:
    """Why the mesh listener's allowedRoutes cannot be evaluated, or None (P3)."""
    if routes.from_ != "Selector":
        return None
    if routes.selector_error:
        return routes.selector_error
    if routes.selector is None:
        return "from: Selector has no selector, so it admits no namespace"
    return selector_problem(routes.selector)


def attachment(
    routes: AllowedRoutes, gateway_namespace: str, consumer_namespace: str, namespace_labels: Mapping[str, str]
) -> Attachment:
    """P2/P3/P4. ``namespace_labels`` are the consumer namespace's labels, name label included."""
    if routes.from_ == "All":
        return Attachment.ALLOWED
    if routes.from_ == "Selector":
        if routes.selector_error or routes.selector is None:
            # A missing selector matches nothing (P3); an unparsable one cannot be evaluated.
            return Attachment.UNKNOWN if routes.selector_error else Attachment.DENIED
        if selector_problem(routes.selector):
            return Attachment.UNKNOWN
        return Attachment.ALLOWED if matches(routes.selector, namespace_labels) else Attachment.DENIED
    if routes.from_ == "Same":
        return Attachment.ALLOWED if gateway_namespace == consumer_namespace else Attachment.DENIED
    # The CRD's enum makes any other value unreachable; treat it like istiod's default: Same.
    return Attachment.ALLOWED if gateway_namespace == consumer_namespace else Attachment.DENIED
