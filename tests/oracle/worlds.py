"""Random valid worlds for the differential tier: Namespaces, GatewayClasses, Gateways and consumers
drawn from a seeded generator, every value one the API server accepts, so that istiod resolves
whatever the combination. The scenarios in scenarios.py pin one rule each; these find the
combinations nobody wrote down."""

from __future__ import annotations

import random
from typing import Any

from tests.oracle.scenarios import CN, CW, IB, IP, MESH, PROXY, UW, UWN, WF, C, Case, gw, gwc, ns, se, svc, we

Obj = dict[str, Any]
CLASSES = ("istio-waypoint", "mesh", "third", "istio")  # built-in, a platform team's, third-party, an ingress


def _routes(rng: random.Random) -> Obj | None:
    return rng.choice(
        [
            None,
            {"from": "Same"},
            {"from": "All"},
            {"from": "Selector", "selector": {"matchLabels": {"team": rng.choice("ab")}}},
        ]
    )


def _gateway(rng: random.Random, name: str, namespace: str, cls: str) -> Obj:
    labels = {WF: rng.choice(["service", "workload", "all", "none"])} if rng.random() < 0.6 else {}
    addresses = rng.choice([IP, IP, IP, None, [{"type": "Hostname", "value": f"{name}.example.com"}]])
    listeners = [{**MESH, **({"allowedRoutes": {"namespaces": r}} if (r := _routes(rng)) else {})}]
    annotations = None
    if rng.random() < 0.15:
        listeners.append({**PROXY, "allowedRoutes": {"namespaces": {"from": rng.choice(["All", "Same"])}}})
        annotations = {IB: rng.choice(["PROXY", "PROXY/15088", "PROXY/15099", "NONE"])}
    return gw(
        name, namespace, cls=cls, labels=labels, annotations=annotations, listeners=listeners, addresses=addresses
    )


def _reference(rng: random.Random, here: str, waypoints: list[tuple[str, str]]) -> dict[str, str]:
    """An own use-waypoint pair: none, a ghost, or one of the world's waypoints (cross-namespace ones
    with use-waypoint-namespace)."""
    choice = rng.random()
    if choice < 0.15:
        return {UW: "none"}
    if choice < 0.25:
        return {UW: "ghost"}
    namespace, name = rng.choice(waypoints)
    return {UW: name, **({UWN: namespace} if namespace != here else {})}


def _canary(rng: random.Random, here: str, waypoints: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    if rng.random() > 0.2:
        return {}, {}
    namespace, name = rng.choice(waypoints)
    labels = {C: rng.choice([name, "none", ""]), **({CN: namespace} if namespace != here else {})}
    return labels, ({CW: rng.choice(["0", "20", "100", "150"])} if rng.random() < 0.7 else {})


def _consumer(rng: random.Random, i: int, here: str, waypoints: list[tuple[str, str]]) -> Obj:
    kind = rng.choice(["Service", "Service", "ServiceEntry", "WorkloadEntry"])
    labels = _reference(rng, here, waypoints) if rng.random() < 0.8 else {}
    if kind == "Service":
        canary, weight = _canary(rng, here, waypoints)
        return svc(f"s{i}", here, {**labels, **canary}, weight or None)
    if kind == "ServiceEntry":
        return se(f"e{i}", here, labels)
    return we(f"w{i}", here, labels)


def world(seed: int, prefix: str) -> Case:
    """One world in namespaces ``<prefix>``, ``<prefix>-i`` (waypoints elsewhere) and ``<prefix>-j``."""
    rng = random.Random(seed)
    namespaces = [prefix, f"{prefix}-i", f"{prefix}-j"]
    classes = {"mesh": f"{prefix}-mesh", "third": f"{prefix}-third"}
    objects: list[Obj] = [
        gwc(classes["mesh"], labels={WF: rng.choice(["service", "all"])} if rng.random() < 0.3 else None),
        gwc(classes["third"], "example.com/gateway-controller"),
    ]
    waypoints: list[tuple[str, str]] = []
    for g in range(rng.randint(1, 3)):
        namespace, cls = rng.choice(namespaces), rng.choice(CLASSES)
        objects.append(_gateway(rng, f"wp{g}", namespace, classes.get(cls, cls)))
        waypoints.append((namespace, f"wp{g}"))
    for n in namespaces:
        labels = {"team": rng.choice("ab")}
        if rng.random() < 0.3:
            labels |= _reference(rng, n, waypoints)
        objects.insert(0, ns(n, labels))
    for i in range(rng.randint(4, 7)):
        objects.append(_consumer(rng, i, rng.choice(namespaces[:2]), waypoints))
    return Case(f"random world {seed}", objects, [
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects if o["kind"] in ("Service", "ServiceEntry", "WorkloadEntry")
    ])  # fmt: skip


def worlds(count: int, seed: int) -> list[Case]:
    return [world(seed * 100_000 + i, f"dr{i:03d}") for i in range(count)]
