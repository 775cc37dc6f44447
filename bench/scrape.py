"""``make bench-scrape``: do 16 scrapers in a loop slow admission down? (issue 18, item 4)

A real kube-apiserver holds 5,000 namespaces, each with a broken Service, so the continuous
audit's findings make ``/metrics`` large (one series per namespace and code, as in the issue's
reproduction). ``waypoint-webhook serve`` runs with the Deployment's own arguments (2 workers,
``--audit``, the probe port), pinned to CPU 0. Real AdmissionReviews go to the webhook at 100/s
over 4 keep-alive connections (this script, CPU 1), first with nobody scraping, then with 16
scrapers fetching ``/metrics`` from the probe port in a loop as fast as it answers (another
process without gzip, the most expensive answer; on CPU 1 under SCHED_IDLE, so that it stands for
clients elsewhere and does not delay this script's client), interleaved, three rounds each.

Reported: the size of ``/metrics``, scrapes served per second, and the reviews' p50/p99/max in
each phase; the target is a scraped p99 within 10 % of the idle one. Results:
bench/results/scrape.json and a Markdown table. Loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hostile import pct, real_reviews  # noqa: E402
from bench.scale_memory import create_all, start_replica  # noqa: E402
from testkit.controlplane import ControlPlane  # noqa: E402
from testkit.harness import EXE, Kubectl, apply_identity, install_crds  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NAMESPACES = 5_000


def _objects() -> Any:
    for i in range(NAMESPACES):
        yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i:05d}"}}
    for i in range(NAMESPACES):
        labels = {"istio.io/use-waypoint": "None"}  # InvalidUseWaypoint: a finding in every namespace
        meta = {"name": "broken", "namespace": f"ns-{i:05d}", "labels": labels}
        yield {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 80}]}}


def _scrape_loop(url: str, threads: int, stop: Any, served: Any, refused: Any) -> None:
    """In a process of its own: ``threads`` clients scraping in a loop, counting answers (200) and
    refusals (429: the probe process's rate limit)."""
    os.sched_setaffinity(0, {1})
    # The scrapers stand for clients elsewhere in the cluster: on two cores they must share CPU 1
    # with this script's review client, and SCHED_IDLE keeps them from delaying it (what they
    # cost the server, on CPU 0, is what is measured).
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    def loop() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
                counter = served if r.status_code == 200 else refused if r.status_code == 429 else None
                if counter is not None:
                    with counter.get_lock():
                        counter.value += 1
            except requests.RequestException:
                pass

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def phase(port: int, ca: str, probe: int, scrapers: int, seconds: float, rate: float) -> dict[str, Any]:
    stop, served, refused = mp.Event(), mp.Value("i", 0), mp.Value("i", 0)
    proc = None
    if scrapers:
        url = f"http://127.0.0.1:{probe}/metrics"
        proc = mp.Process(target=_scrape_loop, args=(url, scrapers, stop, served, refused), daemon=True)
        proc.start()
        time.sleep(2)  # the scrapers at full speed before the reviews start
    begin, begin_refused = served.value, refused.value
    latencies, failures = real_reviews(port, ca, rate, seconds, clients=4)
    scrapes, refusals = served.value - begin, refused.value - begin_refused
    stop.set()
    if proc is not None:
        proc.join(15)
    ms = [x * 1000 for x in latencies]
    return {
        "scrapers": scrapers,
        "reviews": len(latencies),
        "failed": len(failures),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(pct(latencies, 99), 2),  # pct() takes seconds and gives ms
        "max_ms": round(max(ms), 2),
        "scrapes_per_second": round(scrapes / seconds, 1),
        "refused_per_second": round(refusals / seconds, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="each phase (default 30)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scrapers", type=int, default=16)
    ap.add_argument("--rate", type=float, default=100.0, help="reviews per second (default 100)")
    args = ap.parse_args()
    if not shutil.which("taskset"):
        raise SystemExit("bench-scrape needs taskset (util-linux) to pin the server and the clients")
    os.sched_setaffinity(0, {1})
    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}",
        "namespaces": NAMESPACES,
        "rounds": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(work / "cp")
        try:
            cp.start()
            k = Kubectl(cp.kubeconfig)
            install_crds(k)
            apply_identity(k)
            n, seconds = create_all(cp, _objects())
            print(f"created {n} objects in {seconds:.0f}s", flush=True)
            certs = work / "certs"
            subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1"], check=True, capture_output=True)
            proc, probe, log, port = start_replica(cp, work / "server", certs, pin="0")
            try:
                deadline = time.monotonic() + 300
                while True:
                    assert proc.poll() is None, log.read_text()[-2000:]
                    try:
                        text = requests.get(f"http://127.0.0.1:{probe}/metrics", timeout=5).text
                    except requests.RequestException:
                        text = ""
                    if text.count('code="InvalidUseWaypoint"') >= NAMESPACES:
                        break
                    assert time.monotonic() < deadline, "the audit never reported every namespace"
                    time.sleep(1)
                out["metrics_kib"] = round(len(text.encode()) / 1024)
                ca = str(certs / "ca.crt")
                for _ in range(args.rounds):
                    for scrapers in (0, args.scrapers):
                        r = phase(port, ca, probe, scrapers, args.seconds, args.rate)
                        print(json.dumps(r), flush=True)
                        out["rounds"].append(r)
            finally:
                proc.terminate()
                proc.wait(30)
        finally:
            cp.stop()
    idle = [r for r in out["rounds"] if r["scrapers"] == 0]
    busy = [r for r in out["rounds"] if r["scrapers"]]
    out["idle_p99_ms"] = statistics.median(r["p99_ms"] for r in idle)
    out["scraped_p99_ms"] = statistics.median(r["p99_ms"] for r in busy)
    out["ratio"] = round(out["scraped_p99_ms"] / out["idle_p99_ms"], 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scrape.json").write_text(json.dumps(out, indent=2) + "\n")
    md = "\n".join(
        [
            f"Measured {out['date']} on {out['machine']}: /metrics {out['metrics_kib']} KiB "
            f"({NAMESPACES:,} namespaces with findings).",
            "",
            "| scrapers | reviews | failed | p50 | p99 | max | scrapes answered/s | refused (429)/s |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['scrapers']} | {r['reviews']} | {r['failed']} | {r['p50_ms']} ms | {r['p99_ms']} ms | "
                f"{r['max_ms']} ms | {r['scrapes_per_second']} | {r['refused_per_second']} |"
                for r in out["rounds"]
            ),
            "",
            f"Median p99: idle {out['idle_p99_ms']} ms, scraped {out['scraped_p99_ms']} ms (x{out['ratio']}).",
        ]
    )
    (RESULTS / "scrape.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
