"""Realistic cluster state for the benchmark, written as one JSON ``kind: List`` file."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

FOR = ("service", "workload", "all")


def _routes(i: int) -> dict[str, Any] | None:
    kind = i % 4
    if kind == 0:
        return None  # defaulted to Same
    if kind == 1:
        return {"namespaces": {"from": "All"}}
    if kind == 2:
        return {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": f"team-{i % 10}"}}}}
    return {
        "namespaces": {
            "from": "Selector",
            "selector": {
                "matchExpressions": [
                    {"key": "team", "operator": "In", "values": [f"team-{i % 10}", f"team-{(i + 1) % 10}"]}
                ]
            },
        }
    }


def gateway(name: str, ns: str, for_: str, routes: dict[str, Any] | None) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "mesh", "port": 15008, "protocol": "HBONE"}
    if routes:
        listener["allowedRoutes"] = routes
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns, "labels": {"istio.io/waypoint-for": for_}},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [listener]},
        "status": {"addresses": [{"type": "IPAddress", "value": "10.0.0.1"}]},
    }


def write_state(
    out: Path, namespaces: int, waypoints: int, consumers: int, seed: int, hot_waypoint_consumers: int = 500
) -> Path:
    rnd = random.Random(seed)
    items: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "istio-waypoint"},
            "spec": {"controllerName": "istio.io/mesh-controller"},
        }
    ]
    wps = [(f"wp-{j}", f"ns-{j % namespaces}", FOR[j % 3], _routes(j)) for j in range(waypoints)]
    for i in range(namespaces):
        labels = {"istio.io/dataplane-mode": "ambient", "team": f"team-{i % 10}"}
        if wps and i % 10 == 0:
            name, ns, _, _ = wps[i % len(wps)]
            labels["istio.io/use-waypoint"] = name
            labels["istio.io/use-waypoint-namespace"] = ns
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}", "labels": labels}})
    items += [gateway(*w) for w in wps]
    items.append(gateway("hot-waypoint", "ns-0", "all", {"namespaces": {"from": "All"}}))
    for c in range(consumers):
        name, wns, _, _ = wps[rnd.randrange(len(wps))]
        ns = f"ns-{rnd.randrange(namespaces)}"
        kind = ("Service", "Pod", "ServiceEntry")[c % 3]
        api = "networking.istio.io/v1" if kind == "ServiceEntry" else "v1"
        items.append(
            {
                "apiVersion": api,
                "kind": kind,
                "metadata": {
                    "name": f"c-{c}",
                    "namespace": ns,
                    "labels": {
                        "app": f"app-{c}",
                        "istio.io/use-waypoint": name,
                        "istio.io/use-waypoint-namespace": wns,
                    },
                },
            }
        )
    for c in range(hot_waypoint_consumers):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"hot-{c}",
                    "namespace": f"ns-{c % namespaces}",
                    "labels": {"istio.io/use-waypoint": "hot-waypoint", "istio.io/use-waypoint-namespace": "ns-0"},
                },
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    # Shards of 1,000 objects, as a large state directory should be: the loader parses and indexes
    # one file at a time, so parsing never holds the whole cluster at once.
    for n, start in enumerate(range(0, len(items), 1000)):
        chunk = items[start : start + 1000]
        (out / f"state-{n:04d}.json").write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": chunk}))
    return out
