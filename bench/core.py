"""``make bench-core``: what the functional core costs per request, in-process.

Each benchmark payload is decoded once, then judged by ``Engine.validate`` (or ``mutate``) against
the benchmark's realistic state (1,000 namespaces, 200 waypoints, 5,000 consumers): the best of
five runs of 3,000 calls, in microseconds. No HTTP, TLS or worker: this isolates the rules, which
the end-to-end ``make bench`` cannot (a request there costs about 400 µs, mostly the stack).
``python bench/core.py [ROOT]`` measures the tree at ROOT (another checkout, to compare).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.payloads import all_payloads  # noqa: E402
from bench.state import write_state  # noqa: E402
from webhook.admission.wire import decode  # noqa: E402
from webhook.cluster.files import FileView  # noqa: E402
from webhook.core.engine import Engine, Settings  # noqa: E402


def main() -> int:
    state = write_state(Path(tempfile.mkdtemp(prefix="bench-core-")), 1000, 200, 5000, seed=7)
    engine = Engine(FileView(str(state)), Settings())
    print(f"# {ROOT}")
    for name, (path, review) in all_payloads().items():
        if name == "pod-1mb":
            continue  # decoding dominates; the end-to-end benchmark covers it
        req = decode(orjson.dumps(review))
        judge = engine.mutate if path == "/mutate" else engine.validate
        for _ in range(200):
            judge(req)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(3000):
                judge(req)
            best = min(best, (time.perf_counter() - started) / 3000)
        print(f"{name:20s} {best * 1e6:7.1f} µs")
    hostile_tenant()
    policy_impact()
    return 0


def hostile_tenant() -> None:
    """A pathological but legal waypoint (allowedRoutes NotIn with 40,000 values, 0.76 MB) with 100
    consumers, updated one value at a time: each UPDATE re-checks who would stop binding."""
    import copy

    from testkit.builders import consumer, engine, gateway, namespace, request, state

    values = [f"v{i}" for i in range(40_000)]
    routes = {
        "from": "Selector",
        "selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": values}]},
    }
    old = gateway("wp", "infra", labels={"istio.io/waypoint-for": "all"}, routes=routes)
    refs = {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "infra"}
    objs = [namespace(f"n{i}", **{"istio.io/dataplane-mode": "ambient", "team": "a"}) for i in range(100)]
    judge = engine(state(old, *objs, *(consumer("Service", f"s{i}", f"n{i}", refs) for i in range(100)))).validate
    new = copy.deepcopy(old)
    new["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"][0]["values"][7] = "x"
    req = request(new, "UPDATE", old)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        judge(req)
        best = min(best, time.perf_counter() - started)
    print(f"{'gateway-update-40k-selector':20s} {best * 1e3:7.1f} ms (100 consumers)")


def policy_impact() -> None:
    """Issue 20: a Service UPDATE that unbinds it (PolicyEnforcementLost), with 3 policies and routes
    targeting it and 0, 1,000 or 10,000 policies targeting other Services: the cost must follow
    what targets the Service (the reverse index), not the total."""
    from testkit.builders import (
        consumer,
        engine,
        gateway,
        namespace,
        policy,
        request,
        route,
        service_parent,
        state,
        target,
    )

    bound = consumer("Service", "reviews", "l7", {"istio.io/use-waypoint": "wp"}, spec={"ports": [{"port": 9080}]})
    unbound = consumer("Service", "reviews", "l7", None, spec={"ports": [{"port": 9080}]})
    mine = [
        policy(name="deny", ns="l7", targetRefs=[target("Service", "reviews")], action="DENY", rules=[{}]),
        policy("RequestAuthentication", "jwt", "l7", targetRefs=[target("Service", "reviews")]),
        route(name="rt", ns="l7", parents=[service_parent("reviews")]),
    ]
    for others in (0, 1_000, 10_000):
        rest = [policy(name=f"p{i}", ns="l7", targetRefs=[target("Service", f"s{i}")]) for i in range(others)]
        e = engine(
            state(namespace("l7", **{"istio.io/dataplane-mode": "ambient"}), gateway("wp", "l7"), bound, *mine, *rest)
        )
        req = request(unbound, "UPDATE", bound)
        assert [j.code for j in e.validate(req).judged] == ["PolicyEnforcementLost"]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(1000):
                e.validate(req)
            best = min(best, (time.perf_counter() - started) / 1000)
        print(f"{'service-unbind':20s} {best * 1e6:7.1f} µs (3 targeting it, {others:,} other policies)")


if __name__ == "__main__":
    raise SystemExit(main())
