"""``make bench-audit``: what auditing a large cluster costs (issue 11, item 5).

Two cluster sizes from :func:`bench.state.write_state`: small (1,000 namespaces, 100 waypoints,
5,000 consumers) and large (10,000 namespaces, 1,000 waypoints, 50,000 consumers), each with a
"hot" waypoint that 500 more Services name. Every number comes from a fresh process, so peak RSS
(``ru_maxrss`` of that child) is the cost of that one thing:

1. ``waypoint-webhook audit --state DIR -o json``, the one-off audit: wall time and peak memory;
2. the continuous audit's core (:class:`webhook.audit.tracker.Tracker`, fed the objects as watch events
   the way the live view feeds it): the full pass, its memory, and then incremental passes after
   one change: an ordinary waypoint deleted, the hot waypoint deleted, and a Namespace relabelled.
   Each reports how many objects it judged and how long it took; the claim to check is that this
   depends on the changed waypoint's consumers, not on the size of the cluster.

Results: bench/results/audit.json and a Markdown table on stdout (bench/results/audit.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.state import write_state  # noqa: E402
from testkit.harness import EXE  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = {"small": (1_000, 100, 5_000), "large": (10_000, 1_000, 50_000)}
HOT = 500


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_tracker(state: Path) -> dict[str, Any]:
    """In a child process: feed the tracker, full pass, then the incremental passes."""
    from webhook.audit.tracker import Tracker
    from webhook.core.engine import Settings
    from webhook.core.index import Index

    base = _rss_mb()
    index = Index()
    tracker = Tracker(index, Settings())
    objects: list[dict[str, Any]] = []
    started = time.perf_counter()
    for f in sorted(state.glob("state-*.json")):
        for obj in orjson.loads(f.read_bytes())["items"]:
            index.apply(obj)
            tracker.observe(obj, False)
            if obj["kind"] in ("Gateway", "Namespace"):
                objects.append(obj)
    fed = time.perf_counter() - started
    started = time.perf_counter()
    tracker.mark_all()
    judged = tracker.pending()
    tracker.recompute()
    full = time.perf_counter() - started
    out: dict[str, Any] = {
        "objects": tracker.size(),
        "feed_s": fed,
        "full_pass_s": full,
        "full_pass_judged": judged,
        "with_findings": len(tracker.with_findings()),
        "rss_mb": _rss_mb(),
        "rss_over_base_mb": _rss_mb() - base,
    }

    def incremental(label: str, obj: dict[str, Any], deleted: bool) -> None:
        index.apply(obj, deleted=deleted)
        tracker.observe(obj, deleted)
        n = tracker.pending()
        t = time.perf_counter()
        changed = tracker.recompute()
        out[label] = {"judged": n, "changed": len(changed), "ms": (time.perf_counter() - t) * 1000}

    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    ordinary = next(o for o in objects if o["kind"] == "Gateway" and o["metadata"]["name"] == "wp-7")
    consumers = len(index.consumers_of(ordinary["metadata"]["namespace"], "wp-7"))
    incremental("ordinary_waypoint_deleted", ordinary, True)
    out["ordinary_waypoint_deleted"]["consumers"] = consumers
    incremental("ordinary_waypoint_restored", ordinary, False)
    hot = by_name[("Gateway", "hot-waypoint")]
    incremental("hot_waypoint_deleted", hot, True)
    incremental("hot_waypoint_restored", hot, False)
    ns = json.loads(json.dumps(by_name[("Namespace", "ns-3")]))
    ns["metadata"]["labels"]["team"] = "relabelled"
    incremental("namespace_relabelled", ns, False)
    return out


def measure_child(args: list[str]) -> tuple[Any, float, float]:
    """Peak RSS of exactly this child: run it under a fresh Python that reports its own rusage."""
    wrapper = [
        sys.executable,
        "-c",
        (
            "import json, os, resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "wall = time.perf_counter() - t\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "print(json.dumps({'rc': p.returncode, 'wall': wall, 'peak': peak, 'out': p.stdout.decode()[-2000:],"
            " 'bytes': len(p.stdout)}))\n"
        ),
        *args,
    ]
    p = subprocess.run(wrapper, capture_output=True, text=True, check=True)
    r = json.loads(p.stdout)
    return r, r["wall"], r["peak"]


def main() -> int:
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        for size, (namespaces, waypoints, consumers) in SIZES.items():
            state = write_state(Path(tmp) / size, namespaces, waypoints, consumers, seed=7, hot_waypoint_consumers=HOT)
            cli, wall, peak = measure_child([EXE, "audit", "--state", str(state), "-o", "json"])
            entries = json.loads(cli["out"]) if cli["bytes"] < 2000 else None
            res: dict[str, Any] = {
                "namespaces": namespaces,
                "waypoints": waypoints,
                "consumers": consumers + HOT,
                "cli": {
                    "rc": cli["rc"],
                    "wall_s": wall,
                    "peak_rss_mb": peak,
                    "output_bytes": cli["bytes"],
                    "entries": len(entries) if entries is not None else None,
                },
            }
            r, wall, peak = measure_child([sys.executable, __file__, "tracker", str(state)])
            res["tracker"] = {**json.loads(r["out"]), "wall_s": wall, "peak_rss_mb": peak}
            out[size] = res
            print(f"{size}: done", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit.json").write_text(json.dumps(out, indent=2) + "\n")
    text = table(out)
    (RESULTS / "audit.md").write_text(text)
    print(text)
    return 0


def table(out: dict[str, Any]) -> str:
    lines = [
        "| cluster | one-off `audit` (time, peak RSS) | continuous: objects, full pass, peak RSS | "
        "ordinary waypoint deleted | hot waypoint (500) deleted | namespace relabelled |",
        "|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        r = out[size]
        t = r["tracker"]

        def inc(key: str, t: dict[str, Any] = t) -> str:
            return f"{t[key]['judged']} judged, {t[key]['ms']:.1f} ms"

        lines.append(
            f"| {size}: {r['namespaces']:,} ns, {r['waypoints']:,} waypoints, {r['consumers']:,} consumers "
            f"| {r['cli']['wall_s']:.1f} s, {r['cli']['peak_rss_mb']:.0f} MB "
            f"| {t['objects']:,}, {t['full_pass_s']:.1f} s, {t['peak_rss_mb']:.0f} MB "
            f"| {inc('ordinary_waypoint_deleted')} ({t['ordinary_waypoint_deleted']['consumers']} consumers) "
            f"| {inc('hot_waypoint_deleted')} | {inc('namespace_relabelled')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tracker":
        print(json.dumps(child_tracker(Path(sys.argv[2]))))
        raise SystemExit(0)
    raise SystemExit(main())
