"""Label values and placement that Istio reads without validating (docs/rules.md L1, L4, W6):
findings about the label itself, before any reference is resolved."""

from __future__ import annotations

from webhook.core.findings import Code, Finding
from webhook.core.kinds import CONSUMER_KINDS
from webhook.core.model import (
    DATAPLANE_MODE,
    INGRESS_USE_WAYPOINT,
    USE_WAYPOINT,
    USE_WAYPOINT_NAMESPACE,
    Consumer,
    label_field,
    quoted,
)
from webhook.core.rules.context import Context, path_of
from webhook.core.rules.rule import Rule, rule

GO_BOOLS = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
INGRESS_KINDS = frozenset({"Namespace", "Service", "ServiceEntry"})
DATAPLANE_KINDS = frozenset({"Namespace", "Pod"})


def use_waypoint_annotation(c: Consumer, ctx: Context) -> list[Finding]:
    """L1: use-waypoint and use-waypoint-namespace count only as labels."""
    out = []
    for key in (USE_WAYPOINT, USE_WAYPOINT_NAMESPACE):
        if key in c.meta.annotations:
            out.append(
                Finding(
                    Code.UseWaypointAnnotation,
                    f"{c.display()}: {key} is an annotation, which Istio ignores; make it a label",
                    f"{c.meta.prefix}.annotations[{key}]",
                    (path_of(c.meta.prefix, "annotations", key),),
                )
            )
    return out


def dataplane_mode(c: Consumer, ctx: Context) -> list[Finding]:
    """L4: istio.io/dataplane-mode other than ambient or none has no effect."""
    mode = c.labels.get(DATAPLANE_MODE)
    if mode is None or mode in ("ambient", "none"):
        return []
    return [
        Finding(
            Code.InvalidDataplaneMode,
            f"{c.display()}: dataplane-mode {quoted(mode)} is neither ambient nor none; it has no effect",
            label_field(DATAPLANE_MODE, c.meta.prefix),
            (path_of(c.meta.prefix, "labels", DATAPLANE_MODE),),
        )
    ]


def ingress_use_waypoint(c: Consumer, ctx: Context) -> list[Finding]:
    """istio.io/ingress-use-waypoint is parsed as a Go boolean: say how a value other than true or false reads."""
    ingress = c.labels.get(INGRESS_USE_WAYPOINT)
    if ingress is None or ingress in ("true", "false"):
        return []
    meaning = (
        "read as true"
        if ingress in GO_TRUE
        else "read as false"
        if ingress in GO_BOOLS
        else "not a boolean, read as false"
    )
    return [
        Finding(
            Code.InvalidIngressUseWaypoint,
            f"{c.display()}: ingress-use-waypoint {quoted(ingress)} is {meaning}; write true or false",
            label_field(INGRESS_USE_WAYPOINT, c.meta.prefix),
            (path_of(c.meta.prefix, "labels", INGRESS_USE_WAYPOINT),),
        )
    ]


LABEL_RULES: tuple[Rule[Consumer], ...] = (
    rule(use_waypoint_annotation, [Code.UseWaypointAnnotation], CONSUMER_KINDS, "L1"),
    rule(dataplane_mode, [Code.InvalidDataplaneMode], DATAPLANE_KINDS, "L4"),
    rule(ingress_use_waypoint, [Code.InvalidIngressUseWaypoint], INGRESS_KINDS, "W6"),
)
