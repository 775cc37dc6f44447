"""``make bench-hostile``: real reviews while 200 hostile connections stay open.

The server runs as the Deployment runs it (2 workers x 4 threads, TLS, the default deadlines),
pinned to CPU 0; this script (CPU 1) keeps 200 hostile connections open for the whole run, 40 of
each kind, reopening any the server closes:
  - truncated ClientHello: the first bytes of a TLS record, then nothing;
  - idle TCP: connected, nothing sent;
  - idle TLS: handshake done, no request (what Go clients' connection pools look like);
  - slowloris: a request line and one more header byte every second, never the end of the headers;
  - stalled body: headers announcing 100 kB, 20 bytes of body, then nothing.
With ``--tenants N`` (``make bench-hostile TENANTS=2``), N hostile tenants also update a
pathological but legal waypoint in a loop, as fast as the server answers: allowedRoutes ``NotIn``
with 40,000 values (0.76 MB per object, 1.5 MB per review), 100 consumers in the cluster view,
one value changed per UPDATE (issue 18, item 2).
Meanwhile real AdmissionReviews are sent at a fixed rate over keep-alive connections, like the API
server. Reported: the reviews' latency (p50, p99, max) and failures, and for each hostile kind how
long the server let it live, against its deadline. Target: p99 under 100 ms, no failure, and no
hostile connection outliving its deadline (plus the event loop's one-second granularity).

Everything targets 127.0.0.1 only. Results: bench/results/hostile.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.builders import consumer, gateway, namespace, review_body  # noqa: E402
from testkit.controlplane import free_port  # noqa: E402
from testkit.harness import probe_port_of, serve_command  # noqa: E402
from webhook.admission import tls  # noqa: E402
from webhook.admission.worker import Deadlines  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KINDS = ("truncated-hello", "idle-tcp", "idle-tls", "slowloris", "stalled-body")
D = Deadlines()
KEEPALIVE = 120.0
DEADLINE = {
    "truncated-hello": D.handshake,
    "idle-tcp": D.handshake,
    "idle-tls": KEEPALIVE,
    "slowloris": D.header,
    "stalled-body": D.body,
}


@dataclass
class Hostile:
    kind: str
    sock: socket.socket
    opened: float


@dataclass
class HostileStats:
    opened: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    longest: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))


class HostileCrowd:
    """Keeps ``per_kind`` connections of every kind open until stopped."""

    def __init__(self, port: int, ctx: ssl.SSLContext, per_kind: int) -> None:
        self.port, self.ctx, self.per_kind = port, ctx, per_kind
        self.sel = selectors.DefaultSelector()
        self.live: dict[int, Hostile] = {}
        self.stats = HostileStats()
        self.stop = threading.Event()

    def _open(self, kind: str) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock: socket.socket = raw
        if kind == "truncated-hello":
            raw.sendall(b"\x16\x03\x01\x02")
        elif kind != "idle-tcp":
            sock = self.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            if kind == "slowloris":
                sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "stalled-body":
                sock.sendall(
                    b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 100000\r\n\r\n{"apiVersion":"adm'
                )
        sock.setblocking(False)
        h = Hostile(kind, sock, time.monotonic())
        self.live[sock.fileno()] = h
        self.sel.register(sock, selectors.EVENT_READ, h)
        self.stats.opened[kind] += 1

    def _closed(self, h: Hostile) -> None:
        self.sel.unregister(h.sock)
        self.live.pop(h.sock.fileno(), None)
        self.stats.closed[h.kind] += 1
        self.stats.longest[h.kind] = max(self.stats.longest[h.kind], time.monotonic() - h.opened)
        h.sock.close()

    def fill(self) -> None:
        for kind in KINDS:
            have = sum(1 for h in self.live.values() if h.kind == kind)
            for _ in range(self.per_kind - have):
                self._open(kind)

    def run(self) -> None:
        last_drip = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                h: Hostile = key.data
                try:
                    data = h.sock.recv(4096)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._closed(h)
            if time.monotonic() - last_drip >= 1.0:  # slowloris: one more header byte a second
                last_drip = time.monotonic()
                for h in [h for h in self.live.values() if h.kind == "slowloris"]:
                    try:
                        h.sock.send(b"x")
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        pass
                    except OSError:
                        self._closed(h)
            self.fill()

    def close_all(self) -> None:
        for h in list(self.live.values()):
            self.sel.unregister(h.sock)
            h.sock.close()
        self.live.clear()


@dataclass
class Tally:
    """The latencies and failures of one kind of client, shared by its threads."""

    port: int
    ca: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context(cafile=self.ca)
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)

    def review(self, conn: http.client.HTTPSConnection, body: bytes, expect: bytes) -> http.client.HTTPSConnection:
        """One review on ``conn``, timed; the connection to use next (a new one if this one failed)."""
        t = time.monotonic()
        try:
            conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except Exception as e:
            with self.lock:
                self.failures.append(f"{type(e).__name__}: {e}")
            conn.close()
            return self.connect()
        with self.lock:
            self.latencies.append(time.monotonic() - t)
            if r.status != 200 or expect not in data:
                self.failures.append(f"HTTP {r.status}: {data[:200]!r}")
        return conn

    def run(self, clients: int, client: Callable[[], None]) -> tuple[list[float], list[str]]:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.latencies, self.failures


def real_reviews(port: int, ca: str, rate: float, seconds: float, clients: int) -> tuple[list[float], list[str]]:
    """Open loop per client: each of ``clients`` keep-alive connections sends rate/clients reviews a second."""
    body = review_body(consumer("Service", "reviews", labels={"istio.io/use-waypoint": "None"}), uid="bench")
    tally = Tally(port, ca)

    def client() -> None:
        conn = tally.connect()
        interval = clients / rate
        start = time.monotonic()
        n = 0
        while (due := start + n * interval) < start + seconds:
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            conn = tally.review(conn, body, b'"allowed":false')
            n += 1
        conn.close()

    return tally.run(clients, client)


TENANT_VALUES = 40_000
TENANT_CONSUMERS = 100


def tenant_state(into: Path) -> None:
    """The hostile tenant's world beside the shipped example state: its waypoint and 100 consumers."""
    shutil.copytree(ROOT / "examples" / "state", into)
    refs = {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "tenant"}
    objs = [namespace("tenant"), tenant_gateway(-1)]
    for i in range(TENANT_CONSUMERS):
        objs += [namespace(f"t{i}", **{"istio.io/dataplane-mode": "ambient", "team": "a"}),
                 consumer("Service", f"s{i}", f"t{i}", refs)]  # fmt: skip
    (into / "tenant.yaml").write_text("".join(f"---\n{json.dumps(o)}\n" for o in objs))  # JSON is YAML


def tenant_gateway(changed: int) -> dict[str, Any]:
    """The tenant's waypoint with value ``changed`` altered (-1: as stored)."""
    values = [f"v{i}" if i != changed else f"x{i}" for i in range(TENANT_VALUES)]
    sel = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": values}]}
    return gateway(
        "wp", "tenant", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Selector", "selector": sel}
    )


def hostile_tenants(port: int, ca: str, tenants: int, stop: threading.Event) -> tuple[list[float], list[str]]:
    """Closed loop per tenant: UPDATE after UPDATE of the pathological waypoint, until ``stop``."""
    old = tenant_gateway(-1)
    bodies = [review_body(tenant_gateway(i), uid=f"tenant-{i}", operation="UPDATE", old=old) for i in range(8)]
    tally = Tally(port, ca)

    def tenant() -> None:
        conn = tally.connect()
        n = 0
        while not stop.is_set():
            conn = tally.review(conn, bodies[n % len(bodies)], b'"allowed":true')
            n += 1
        conn.close()

    return tally.run(tenants, tenant)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000 if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--per-kind", type=int, default=40, help="hostile connections of each kind (default 40)")
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement time (default 40)")
    ap.add_argument("--rate", type=float, default=100.0, help="real reviews per second (default 100)")
    ap.add_argument(
        "--tenants", type=int, default=0, help="hostile tenants updating a 40,000-value selector (default 0)"
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wpw-hostile-"))
    certs = work / "certs"
    tls.write(tls.issue(["localhost"], ["127.0.0.1"]), certs)
    port = free_port()
    state = ROOT / "examples" / "state"
    if args.tenants:
        tenant_state(state := work / "state")
    cmd = serve_command(port, certs, 2, "--threads", "4", "--state", str(state), "--log-level", "warning")
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
        os.sched_setaffinity(0, {1})
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    ca = str(certs / "ca.crt")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"https://127.0.0.1:{port}/readyz", verify=ca, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        crowd = HostileCrowd(port, ssl.create_default_context(cafile=ca), args.per_kind)
        crowd.fill()
        runner = threading.Thread(target=crowd.run)
        runner.start()
        time.sleep(2)
        held = len(crowd.live)
        stop_tenants = threading.Event()
        tenant_result: list[tuple[list[float], list[str]]] = []
        tenants = threading.Thread(
            target=lambda: tenant_result.append(hostile_tenants(port, ca, args.tenants, stop_tenants))
        )
        tenants.start()
        latencies, failures = real_reviews(port, ca, args.rate, args.seconds, clients=4)
        stop_tenants.set()
        tenants.join()
        tenant_latencies, tenant_failures = tenant_result[0]
        held_end = len(crowd.live)
        crowd.stop.set()
        runner.join()
        crowd.close_all()
        metrics = requests.get(f"http://127.0.0.1:{probe_port_of(cmd)}/metrics", timeout=5).text
        rss = sum(
            int(line.split()[1])
            for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    finally:
        proc.terminate()
        proc.wait(30)

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, CPython {platform.python_version()}",
        "server": "2 workers x 4 threads, TLS, deadlines handshake 5 s, header 10 s, body 10 s, keep-alive 120 s",
        "hostile_open": {"at_start": held, "at_end": held_end, "target": args.per_kind * len(KINDS)},
        "reviews": {
            "sent": len(latencies) + len([f for f in failures if "HTTP" not in f]),
            "failed": len(failures),
            "rate": args.rate,
            "seconds": args.seconds,
            "p50_ms": round(pct(latencies, 50), 2),
            "p99_ms": round(pct(latencies, 99), 2),
            "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
            "mean_ms": round(statistics.mean(latencies) * 1000, 2) if latencies else None,
        },
        "tenants": {
            "count": args.tenants,
            "updates": len(tenant_latencies),
            "failed": len(tenant_failures),
            "p50_ms": round(pct(tenant_latencies, 50), 2),
            "p99_ms": round(pct(tenant_latencies, 99), 2),
            "failures": tenant_failures[:5],
        },
        "hostile": {
            k: {
                "opened": crowd.stats.opened[k],
                "closed_by_server": crowd.stats.closed[k],
                "longest_s": round(crowd.stats.longest[k], 1),
                "deadline_s": DEADLINE[k],
            }
            for k in KINDS
        },
        "closed_by_reason": {
            line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("waypoint_webhook_connections_closed_total{")
        },
        "worker_rss_mb": round(rss / 1024, 1),
        "failures": failures[:10],
    }
    ok = (
        not failures
        and not tenant_failures
        and result["reviews"]["p99_ms"] < 100
        and all(crowd.stats.longest[k] <= DEADLINE[k] + 1.5 for k in KINDS if crowd.stats.closed[k])
    )
    result["target_met"] = ok
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")
    r = result["reviews"]
    print(f"hostile connections held: {held} at start, {held_end} at end (target {args.per_kind * len(KINDS)})")
    print(
        f"real reviews: {r['sent']} at {args.rate:g}/s, {r['failed']} failed, "
        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms"
    )
    if args.tenants:
        t = result["tenants"]
        print(
            f"hostile tenants: {t['count']}, {t['updates']} UPDATEs of the 40,000-value selector, {t['failed']} failed, "
            f"p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms"
        )
    print("| hostile kind | opened | closed by the server | longest life (s) | deadline (s) |")
    print("|---|---|---|---|---|")
    for k, v in result["hostile"].items():
        print(f"| {k} | {v['opened']} | {v['closed_by_server']} | {v['longest_s']} | {v['deadline_s']:g} |")
    print(f"closed by reason: {result['closed_by_reason']}; worker RSS {result['worker_rss_mb']} MB")
    print(f"target (p99 < 100 ms, no failure, none past its deadline): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
