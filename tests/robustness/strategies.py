"""Hypothesis strategies: valid objects of every handled kind, and the same objects with a value
anywhere replaced by one of another type (what a buggy client or a hand-written state file sends)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from testkit.builders import (
    MESH,
    consumer,
    gateway,
    gateway_class,
    namespace,
    policy,
    route,
    service_parent,
    target,
    workload,
)

UW, UWN = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
Path = tuple[str | int, ...]

SEEDS: list[dict[str, Any]] = [
    gateway("waypoint", "default", labels={"istio.io/waypoint-for": "all"}, ready=True),
    gateway(
        "shared",
        "infra",
        labels={"istio.io/waypoint-for": "service", "istio.io/dataplane-mode": "x"},
        listeners=[
            {
                **MESH,
                "allowedRoutes": {
                    "namespaces": {
                        "from": "Selector",
                        "selector": {
                            "matchLabels": {"team": "a"},
                            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
                        },
                    }
                },
            },
            {"name": "http", "port": 80, "protocol": "HTTP"},
        ],
        ready=True,
    ),
    gateway("ingress", "default", cls="istio", listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
    {
        **gateway(
            "sandwich",
            "default",
            cls="istio",
            listeners=[{"name": "proxy", "port": 15088, "protocol": "istio.io/PROXY"}],
        ),
        "metadata": {
            "name": "sandwich",
            "namespace": "default",
            "annotations": {"ambient.istio.io/waypoint-inbound-binding": "PROXY/15088"},
        },
    },
    gateway_class("istio-waypoint", {"istio.io/waypoint-for": "service"}),
    namespace("default", **{"istio.io/dataplane-mode": "ambient", UW: "waypoint"}),
    consumer(
        "Service",
        "reviews",
        labels={UW: "shared", UWN: "infra", "istio.io/ingress-use-waypoint": "true"},
        annotations={UW: "x"},
        spec={"type": "ClusterIP", "ports": [{"port": 9080}]},
    ),
    consumer(
        "Service",
        "canaried",
        labels={
            UW: "waypoint",
            "istio.io/use-waypoint-canary": "shared",
            "istio.io/use-waypoint-canary-namespace": "infra",
        },
        annotations={"istio.io/use-waypoint-canary-weight": "20"},
    ),
    consumer("Pod", "app", labels={UW: "waypoint", "istio.io/dataplane-mode": "ambient"}, owner=True),
    consumer(
        "ServiceEntry",
        "ext",
        labels={UW: "waypoint"},
        spec={
            "hosts": ["example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "1.2.3.4", "labels": {UW: "waypoint"}}],
        },
    ),
    consumer("WorkloadEntry", "vm", labels={UW: "waypoint"}, spec={"address": "1.2.3.5", "labels": {UWN: "x"}}),
    workload("Deployment", labels={UW: "waypoint"}),
    workload("CronJob", labels={UW: "None"}),
    # A7: policies and routes, every part the Z rules read
    policy(
        targetRefs=[target("Service", "reviews"), target("Gateway", "waypoint"), target("GatewayClass", "x")],
        targetRef=target("ServiceEntry", "ext"),
        action="DENY",
        rules=[
            {
                "from": [{"source": {"namespaces": ["a"], "requestPrincipals": ["*"], "trustDomains": ["td"]}}],
                "to": [{"operation": {"ports": ["9080"], "paths": ["/admin"]}}],
                "when": [{"key": "request.headers[x]", "values": ["1"]}, {"key": "source.ip", "values": ["10.0.0.1"]}],
            }
        ],
    ),
    policy(
        annotations={"istio.io/dry-run": "true"},
        selector={"matchLabels": {"app": "a"}},
        rules=[{"to": [{"operation": {"methods": ["GET"]}}]}],
    ),
    policy("EnvoyFilter", workloadSelector={"labels": {"app": "a"}}, targetRefs=[target("Service", "reviews")]),
    route(parents=[service_parent("reviews"), service_parent("ext", kind="ServiceEntry"), {"name": "gw"}]),
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


# What a YAML file can hold besides JSON: keys that are numbers, booleans or null.
YAML = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.integers(-3, 3) | st.booleans() | st.none(), inner, max_size=3)
    ),
    max_leaves=8,
)


def paths(obj: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every place a value lives: dict entries and list items, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from paths(v, (*prefix, i))


def _replace(obj: Any, path: Path, value: Any, how: str, key_types: tuple[type, ...]) -> None:
    """``how``: replace the value, delete the key, or rename the key to ``value`` (when it is of
    ``key_types``: strings for JSON, also numbers, booleans and null for YAML)."""
    for step in path[:-1]:
        obj = obj[step]
    last = path[-1]
    if how == "delete" and isinstance(obj, dict):
        del obj[last]
    elif how == "rename" and isinstance(obj, dict) and isinstance(value, key_types):
        obj[value] = obj.pop(last)
    else:
        obj[last] = value


@st.composite
def mutated(
    draw: st.DrawFn, seeds: list[dict[str, Any]] = SEEDS, values: st.SearchStrategy[Any] = JSON
) -> dict[str, Any]:
    """A seed with one to three values replaced (or keys removed) anywhere in it."""
    obj: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        where = list(paths(obj))
        if not where:
            break
        path = draw(st.sampled_from(where))
        if path[:1] in (("apiVersion",), ("kind",)):
            continue  # the request's kind decides dispatch; these are not the object's fields
        key_types = (str,) if values is JSON else (str, int, bool, type(None))
        _replace(obj, path, draw(values), draw(st.sampled_from(("replace", "delete", "rename"))), key_types)
    return obj
