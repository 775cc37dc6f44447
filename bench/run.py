"""``make bench``: the webhook as deployed, against the floor, at realistic and large scale.

What runs (each server pinned to CPU 0 with one gunicorn worker, the Go load generator to CPU 1):
  1. per payload: saturation on the floor and on the webhook (the ratio is the point), then the
     webhook at open-loop 100 and 500 req/s; 200 req/s for the latency targets; a new TLS
     connection per request for the worst case;
  2. per-request cost against cluster size (100 vs 10,000 namespaces) and Gateway DELETE cost
     against the waypoint's consumer count;
  3. resident memory of the worker for growing views up to 10,000 namespaces, 1,000 waypoints and
     50,000 consumers;
  4. API-server-observed overhead: 20 concurrent clients creating Services and Pods on the real
     kube-apiserver of the end-to-end tier, with and without the webhook registered.
Results: bench/results/latest.json and a Markdown table on stdout (bench/results/latest.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import payloads  # noqa: E402
from bench.state import write_state  # noqa: E402
from testkit.controlplane import free_port  # noqa: E402
from testkit.harness import serve_command  # noqa: E402
from webhook.admission import tls  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def build_loadgen(out: Path) -> Path:
    exe = out / "loadgen"
    subprocess.run(
        ["go", "build", "-o", str(exe), "."],
        cwd=ROOT / "bench" / "loadgen",
        check=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
    )
    return exe


@contextmanager
def server(
    kind: str, work: Path, certs: Path, state: Path | None = None, extra: list[str] | None = None, cpu: str = "0"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cert, key = str(certs / "tls.crt"), str(certs / "tls.key")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if kind == "floor":
        cmd = [sys.executable, str(ROOT / "bench" / "floor.py"), str(port), cert, key, "1", "4"]
        env["PYTHONPATH"] = str(ROOT)
    else:
        cmd = serve_command(port, certs, 1, "--threads", "4", "--log-level", "warning", *(extra or []))
        if state is not None:
            cmd += ["--state", str(state)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    log = (work / f"{kind}-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if requests.get(url + "/readyz", verify=str(certs / "ca.crt"), timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} server did not start; see {log.name}")
        time.sleep(0.2)
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)


def worker_rss_mb(master: subprocess.Popen[bytes]) -> float:
    """RSS of the gunicorn worker (the child of the master; taskset execs in place)."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    pid = int(children[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Load:
    def __init__(self, exe: Path, ca: Path, quick: bool) -> None:
        self.exe, self.ca = exe, ca
        self.duration = "2s" if quick else "4s"

    def run(
        self,
        url: str,
        body: Path,
        rate: float = 0,
        conns: int = 8,
        new_conn: bool = False,
        duration: str | None = None,
        **extra: str,
    ) -> dict[str, Any]:
        cmd = [
            str(self.exe),
            "-url",
            url,
            "-body",
            str(body),
            "-ca",
            str(self.ca),
            "-rate",
            str(rate),
            "-conns",
            str(conns),
            "-duration",
            duration or self.duration,
            "-warmup",
            "1s",
        ]
        if new_conn:
            cmd.append("-new-conn")
        for k, v in extra.items():
            cmd += [f"-{k}", v]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        if os.environ.get("BENCH_DEBUG"):
            print(" ".join(cmd), out.stdout.strip(), file=sys.stderr)
        result: dict[str, Any] = json.loads(out.stdout)
        if result["errors"]:
            print(f"  ! {result['errors']} errors: {result.get('first_error')}", file=sys.stderr)
        return result


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best of n saturation runs: interference on a shared VM only ever slows a run down."""
    return max(runs, key=lambda r: r["rps"])


def bench_payloads(
    load: Load, work: Path, certs: Path, state: Path, files: dict[str, tuple[str, Path]], out: dict[str, Any]
) -> None:
    results: dict[str, Any] = {}
    long = "15s" if load.duration == "4s" else "5s"
    with server("floor", work, certs) as (floor_url, _), server("webhook", work, certs, state) as (url, proc):
        for name, (path, body) in files.items():
            floor_runs, runs = [], []
            for _ in range(2):  # interleaved, so drift affects both alike
                floor_runs.append(load.run(floor_url + path, body))
                runs.append(load.run(url + path, body))
            r = results[name] = {"floor": best(floor_runs), "saturation": best(runs)}
            r["ratio"] = round(r["saturation"]["rps"] / r["floor"]["rps"], 3)
            for rate in (100, 500):
                r[f"open_{rate}"] = load.run(url + path, body, rate=rate)
            print(
                f"  {name:<18} {r['saturation']['rps']:7.0f} req/s = {r['ratio']:.0%} of floor; "
                f"service p99 at 500/s {r['open_500']['svc_p99_ms']:.2f} ms",
                file=sys.stderr,
            )
        for name in ("pod-4k", "gateway-validate"):
            results[name]["open_200"] = load.run(url + files[name][0], files[name][1], rate=200, duration=long)
            results[name]["floor_open_200"] = load.run(
                floor_url + files[name][0], files[name][1], rate=200, duration=long
            )
        body = files["pod-4k"][1]
        results["pod-4k"]["new_conn"] = best([load.run(url + "/validate", body, new_conn=True) for _ in range(2)])
        results["pod-4k"]["floor_new_conn"] = best(
            [load.run(floor_url + "/validate", body, new_conn=True) for _ in range(2)]
        )
        out["rss_mb_realistic"] = round(worker_rss_mb(proc), 1)
    out["payloads"] = results


def bench_calibration(load: Load, work: Path, certs: Path, body: Path, out: dict[str, Any]) -> None:
    """The same client against the fastest server this machine runs (Go, TLS, trivial handler)."""
    port = free_port()
    cmd = [
        str(load.exe),
        "-serve",
        f"127.0.0.1:{port}",
        "-cert",
        str(certs / "tls.crt"),
        "-key",
        str(certs / "tls.key"),
    ]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd)
    try:
        time.sleep(0.5)
        url = f"https://127.0.0.1:{port}/"
        out["calibration_go_server"] = {
            "open_200": load.run(url, body, rate=200, duration="15s" if load.duration == "4s" else "5s"),
            "saturation": best([load.run(url, body) for _ in range(2)]),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def bench_scaling(load: Load, work: Path, certs: Path, out: dict[str, Any]) -> None:
    """Same request against 100 and 10,000 namespaces; DELETE cost against consumer count."""
    scaling: dict[str, Any] = {}
    for n_ns in (100, 10_000):
        state = write_state(work / f"scale-{n_ns}", namespaces=n_ns, waypoints=200, consumers=5000, seed=2)
        body = payloads.write(work / f"scale-{n_ns}-pod.json", payloads.pod_4k(n_ns))
        with server("webhook", work, certs, state) as (url, _):
            scaling[f"namespaces_{n_ns}"] = {
                "open_200": load.run(url + "/validate", body, rate=200, duration="10s"),
                "saturation": load.run(url + "/validate", body),
            }
    for n_cons in (10, 1000, 10_000):
        state = write_state(
            work / f"del-{n_cons}", namespaces=100, waypoints=20, consumers=0, seed=3, hot_waypoint_consumers=n_cons
        )
        body = payloads.write(work / f"del-{n_cons}.json", payloads.gateway_delete("ns-0", "hot-waypoint"))
        with server("webhook", work, certs, state) as (url, _):
            scaling[f"delete_consumers_{n_cons}"] = {"saturation": load.run(url + "/validate", body)}
    out["scaling"] = scaling


def bench_memory(work: Path, certs: Path, out: dict[str, Any]) -> None:
    sizes = [(0, 0, 0), (1000, 100, 5000), (5000, 500, 25_000), (10_000, 1000, 50_000)]
    rows = []
    for n_ns, n_wp, n_cons in sizes:
        state = write_state(work / f"mem-{n_ns}", namespaces=max(n_ns, 1), waypoints=n_wp, consumers=n_cons, seed=4)
        with server("webhook", work, certs, state) as (url, proc):
            body = payloads.write(work / "mem-pod.json", payloads.pod_4k(max(n_ns, 1)))
            for _ in range(50):
                requests.post(
                    url + "/validate",
                    data=body.read_bytes(),
                    verify=str(certs / "ca.crt"),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
            rows.append(
                {"namespaces": n_ns, "waypoints": n_wp, "consumers": n_cons, "rss_mb": round(worker_rss_mb(proc), 1)}
            )
        print(f"  memory {rows[-1]}", file=sys.stderr)
    base, full = rows[0]["rss_mb"], rows[-1]
    out["memory"] = {
        "rows": rows,
        "per_10k_objects_mb": round(
            (full["rss_mb"] - base) / ((full["namespaces"] + full["waypoints"] + full["consumers"]) / 10_000), 2
        ),
    }


def bench_apiserver(load: Load, work: Path, out: dict[str, Any]) -> None:
    """20 concurrent clients creating labelled Services and Pods, with and without the webhook."""
    from testkit.controlplane import ControlPlane
    from testkit.harness import Kubectl, rendered_manifests, webhook_configs
    from testkit.webhook_process import start_webhook

    cp = ControlPlane(work / "cp")
    cp.start()
    k = Kubectl(cp.kubeconfig)
    try:
        docs = [
            d
            for d in rendered_manifests(k)
            if d["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
        ]
        k.apply(docs)
        k("create", "namespace", "bench")
        k("label", "namespace", "bench", "istio.io/dataplane-mode=ambient")
        wh = start_webhook(cp, k, work / "apiserver-webhook")
        pki = cp.workdir / "pki"

        def measure(tag: str, rate: float = 0) -> dict[str, Any]:
            res = {}
            bodies = {
                "services": payloads.write(work / f"api-svc-{tag}.json", payloads.api_service(tag)),
                "pods": payloads.write(work / f"api-pod-{tag}.json", payloads.api_pod(tag)),
            }
            for resource, body in bodies.items():
                res[resource] = load.run(
                    f"{cp.url}/api/v1/namespaces/bench/{resource}",
                    body,
                    conns=20,
                    duration="6s",
                    rate=rate,
                    ca=str(pki / "ca.crt"),
                    cert=str(pki / "admin.crt"),
                    key=str(pki / "admin.key"),
                    expect="201",
                )
            return res

        without, without_100 = measure("without"), measure("without100", 100)
        k.apply(webhook_configs(k, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))
        deadline = time.monotonic() + 60
        probe = payloads.api_service_bad()
        while "InvalidUseWaypoint" not in k.apply(probe, "--dry-run=server", check=False).stderr:
            if time.monotonic() > deadline:
                raise RuntimeError("webhook not effective")
            time.sleep(0.5)
        with_webhook, with_100 = measure("with"), measure("with100", 100)
        wh.proc.terminate()
        out["apiserver"] = {
            r: {
                "without": without[r],
                "with": with_webhook[r],
                "p99_ratio": round(with_webhook[r]["p99_ms"] / max(without[r]["p99_ms"], 1e-6), 3),
                "p50_ratio": round(with_webhook[r]["p50_ms"] / max(without[r]["p50_ms"], 1e-6), 3),
                "open_100": {
                    "without": without_100[r],
                    "with": with_100[r],
                    "p99_ratio": round(with_100[r]["p99_ms"] / max(without_100[r]["p99_ms"], 1e-6), 3),
                },
            }
            for r in ("services", "pods")
        }
    finally:
        cp.stop()


def _lat(r: dict[str, Any]) -> str:
    return f"{r['svc_p50_ms']:.2f} / {r['svc_p99_ms']:.2f} / {r['svc_p999_ms']:.2f}"


def table(out: dict[str, Any]) -> str:
    lines = [
        "| payload | floor req/s | webhook req/s | ratio | service p50 / p99 / p99.9 ms at 100/s | at 500/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in out["payloads"].items():
        lines.append(
            f"| {name} | {r['floor']['rps']:.0f} | {r['saturation']['rps']:.0f} | {r['ratio']:.0%} | "
            f"{_lat(r['open_100'])} | {_lat(r['open_500'])} |"
        )
    p, g = out["payloads"]["pod-4k"], out["payloads"]["gateway-validate"]
    cal = out["calibration_go_server"]
    lines += [
        "",
        f"- 200 req/s, service p50 / p99 / p99.9 ms: 4 KB Pod {_lat(p['open_200'])} (floor {_lat(p['floor_open_200'])}); "
        f"Gateway {_lat(g['open_200'])} (floor {_lat(g['floor_open_200'])}); a trivial Go server on the same "
        f"machine: {_lat(cal['open_200'])}, {cal['saturation']['rps']:.0f} req/s at saturation",
        f"- Open loop, measured from each request's due time (includes client scheduling): 4 KB Pod at 200/s "
        f"p99 {p['open_200']['p99_ms']:.2f} ms, p99.9 {p['open_200']['p999_ms']:.2f} ms",
        f"- New TLS connection per request (4 KB Pod): {p['new_conn']['rps']:.0f} req/s vs "
        f"{p['saturation']['rps']:.0f} with keep-alive ({p['new_conn']['rps'] / p['saturation']['rps']:.0%}); "
        f"floor {p['floor_new_conn']['rps']:.0f} vs {p['floor']['rps']:.0f}",
    ]
    if "scaling" in out:
        s = out["scaling"]
        lines.append(
            f"- Cluster size, 4 KB Pod: service p99 at 200/s {s['namespaces_100']['open_200']['svc_p99_ms']:.2f} ms "
            f"with 100 namespaces, {s['namespaces_10000']['open_200']['svc_p99_ms']:.2f} ms with 10,000; saturation "
            f"{s['namespaces_100']['saturation']['rps']:.0f} vs {s['namespaces_10000']['saturation']['rps']:.0f} req/s"
        )
        lines.append(
            "- Gateway DELETE, by consumers of that waypoint: "
            + ", ".join(
                f"{k.rsplit('_', 1)[1]}: {v['saturation']['rps']:.0f} req/s"
                for k, v in s.items()
                if k.startswith("delete")
            )
        )
    if "memory" in out:
        m = out["memory"]
        lines.append(
            "- Worker RSS: "
            + ", ".join(
                f"{r['namespaces']} ns / {r['waypoints']} wp / {r['consumers']} consumers: {r['rss_mb']} MB"
                for r in m["rows"]
            )
            + f" (about {m['per_10k_objects_mb']} MB per 10,000 objects)"
        )
    if "apiserver" in out:
        for r, v in out["apiserver"].items():
            lines.append(
                f"- API server, 20 clients creating {r}: p50 {v['without']['p50_ms']:.1f} → "
                f"{v['with']['p50_ms']:.1f} ms, p99 {v['without']['p99_ms']:.1f} → {v['with']['p99_ms']:.1f} ms "
                f"(x{v['p99_ratio']:.2f}); {v['without']['rps']:.0f} → {v['with']['rps']:.0f} creates/s; "
                f"open loop 100/s: p99 {v['open_100']['without']['p99_ms']:.1f} → "
                f"{v['open_100']['with']['p99_ms']:.1f} ms (x{v['open_100']['p99_ratio']:.2f})"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs (a smoke test of the harness)")
    ap.add_argument("--skip", action="append", default=[], choices=("scaling", "memory", "apiserver"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waypoint-bench-"))
    started = time.monotonic()
    try:
        certs = work / "certs"
        tls.write(tls.issue(["localhost"], ["127.0.0.1"]), certs)
        exe = build_loadgen(work)
        load = Load(exe, certs / "ca.crt", args.quick)
        random.seed(1)
        state = write_state(work / "state", namespaces=1000, waypoints=200, consumers=5000, seed=1)
        files = payloads.write_all(work / "payloads")
        out: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
            f"{platform.python_version()}; server on CPU 0 (1 worker, 4 threads), load on CPU 1",
            "state": {"namespaces": 1000, "waypoints": 200, "consumers": 5000},
        }
        print("calibration (Go server)…", file=sys.stderr)
        bench_calibration(load, work, certs, files["pod-4k"][1], out)
        print("payloads (floor and webhook, interleaved)…", file=sys.stderr)
        bench_payloads(load, work, certs, state, files, out)
        if "scaling" not in args.skip:
            print("scaling…", file=sys.stderr)
            bench_scaling(load, work, certs, out)
        if "memory" not in args.skip:
            print("memory…", file=sys.stderr)
            bench_memory(work, certs, out)
        if "apiserver" not in args.skip:
            print("API server overhead…", file=sys.stderr)
            bench_apiserver(load, work, out)
        out["seconds"] = round(time.monotonic() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(out, indent=2) + "\n")
        md = table(out)
        (RESULTS / "latest.md").write_text(md + "\n")
        print(md)
        print(f"\n({out['seconds']} s; bench/results/latest.json)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
