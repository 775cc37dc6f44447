"""Where the API server's open-loop tail goes (issue 22 item 2): labelled Services created at a
steady rate through a real kube-apiserver, with and without the webhook, with the placement of the
peer benchmark (kube-apiserver and etcd on CPU 0; the webhook's process tree and the load client
on CPU 1). Prints client p50/p99/p99.9 per configuration, interleaved over rounds.

    .venv/bin/python -m bench.stall [--rate 100] [--seconds 20] [--rounds 2] [--config none,serve,audit]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import payloads
from bench.run import Load, build_loadgen
from testkit.controlplane import ControlPlane, process_tree
from testkit.harness import Kubectl, apply_identity, install_crds, make_ready, webhook_configs
from testkit.webhook_process import Webhook, start_webhook


def pin(pids: list[int], cpu: str) -> None:
    for p in pids:
        subprocess.run(["taskset", "-a", "-pc", cpu, str(p)], capture_output=True, check=False)


def setup(k: Kubectl) -> None:
    install_crds(k)
    apply_identity(k)
    k("create", "namespace", "bench")
    k("label", "namespace", "bench", "istio.io/dataplane-mode=ambient")
    k.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "bench", "labels": {"istio.io/waypoint-for": "service"}},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }
    )
    make_ready(k, "waypoint", "bench")


def register(k: Kubectl, wh: Webhook) -> None:
    k.apply(webhook_configs(k, int(wh.url.rsplit(":", 1)[1]), wh.ca.read_bytes()))


def wait_effective(k: Kubectl) -> None:
    """Until a server-side dry run of a broken Service is denied: the admission in force."""
    deadline = time.monotonic() + 60
    while "InvalidUseWaypoint" not in k.apply(payloads.api_service_bad(), "--dry-run=server", check=False).stderr:
        if time.monotonic() > deadline:
            raise RuntimeError("the admission configuration did not take effect")
        time.sleep(0.5)


def pinned_cluster(work: Path) -> tuple[ControlPlane, Kubectl, Load]:
    """kube-apiserver and etcd on CPU 0 with the bench namespace and its waypoint, and the load
    client (on CPU 1) that creates through them with the admin's certificate."""
    cp = ControlPlane(work / "cp")
    cp.start()
    pin([q for p in cp.pids for q in process_tree(p)], "0")
    k = Kubectl(cp.kubeconfig)
    setup(k)
    return cp, k, Load(build_loadgen(work), cp.workdir / "pki" / "ca.crt", False)


def unregister(k: Kubectl) -> None:
    for d in webhook_configs(k, 1, b"x"):
        k("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--config", default="none,serve,audit")
    ap.add_argument("--extra", default="", help="extra serve flags, comma-separated")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waypoint-stall-"))
    cp, k, load = pinned_cluster(work)
    pki = cp.workdir / "pki"
    results: dict[str, list[dict[str, Any]]] = {}
    n = 0
    try:
        for rnd in range(args.rounds):
            for config in args.config.split(","):
                wh = None
                if config != "none":
                    extra = (["--audit"] if config == "audit" else []) + [e for e in args.extra.split(",") if e]
                    wh = start_webhook(cp, k, work / f"wh-{rnd}-{config}", extra)
                    pin(process_tree(wh.proc.pid), "1")
                    register(k, wh)
                    wait_effective(k)
                    time.sleep(2)
                n += 1
                body = payloads.write(work / f"svc-{n}.json", payloads.api_service(f"r{n}"))
                r = load.run(
                    f"{cp.url}/api/v1/namespaces/bench/services", body, rate=args.rate, conns=args.conns,
                    duration=f"{args.seconds}s", ca=str(pki / "ca.crt"), cert=str(pki / "admin.crt"),
                    key=str(pki / "admin.key"), expect="201",
                )  # fmt: skip
                results.setdefault(config, []).append(r)
                print(f"round {rnd} {config}: p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} p99.9 {r['p999_ms']:.1f} ms (svc p99 {r['svc_p99_ms']:.1f}), "
                      f"{r['rps']:.0f}/s, errors {r['errors']}", file=sys.stderr)  # fmt: skip
                if wh is not None:
                    unregister(k)
                    wh.stop()
    finally:
        cp.stop()
    summary = {
        c: {q: round(statistics.median(r[q] for r in rs), 2) for q in ("p50_ms", "p99_ms", "p999_ms")}
        for c, rs in results.items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
