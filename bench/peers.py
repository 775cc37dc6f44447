"""``make bench-peers`` (issue 22): what each way of enforcing the waypoint rules costs the API
server, measured from the API server's side in one run.

Configurations, each set up and torn down per round, rounds interleaved:

- ``none``: no admission beyond the API server's own;
- ``cel``: the generated ValidatingAdmissionPolicies alone (manifests/fail-open/policy.yaml, the
  stateless rules, evaluated inside the API server);
- ``kyverno``: Kyverno's admission controller out of cluster with a ClusterPolicy of the same
  stateless rules (bench/kyverno.py; built from the Go module proxy on first use);
- ``webhook``: this webhook as shipped (``serve --audit``, 2 workers, 4 threads, the shipped
  Validating/MutatingWebhookConfigurations);
- ``webhook+cel``: the fail-open install, both.

Placement on 2 cores: kube-apiserver and etcd on CPU 0; the admission server's process tree and
the Go load client on CPU 1 (taskset), alike for every configuration. Workloads: labelled
Services, Pods and waypoint Gateways created in an ambient namespace whose waypoint exists, over
HTTP/1.1 keep-alive, closed loop at 1, 20 and 50 clients and open loop at 100 and 300 creates/s.
Reported: client p50/p99/p99.9 and creates/s, each as a ratio to ``none`` of the same round
(medians over rounds), and the API server's own admission-step p99 (from
``apiserver_admission_step_admission_duration_seconds``, the delta over each run).

    .venv/bin/python -m bench.peers [--rounds 3] [--seconds 6] [--configs none,cel,webhook,webhook+cel] [--no-kyverno]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

from bench import kyverno, payloads, profile
from bench.run import Load
from bench.stall import pin, pinned_cluster, register, unregister, wait_effective
from testkit.controlplane import ControlPlane, process_tree
from testkit.harness import Kubectl, make_ready
from testkit.webhook_process import Webhook, start_webhook
from webhook.core.policies import POLICIES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOADS = (("closed", 1), ("closed", 20), ("closed", 50), ("open", 100), ("open", 300))
CHECKS = {
    "none": "nothing",
    "cel": f"the stateless rules (label syntax, the HBONE listener): {len(POLICIES)} ValidatingAdmissionPolicies "
    "(the policy-target one matches no kind created here)",
    "kyverno": "the same stateless rules as a ClusterPolicy (validate.cel, the VAPs' expressions)",
    "kyverno-vpol": "the same stateless rules as Kyverno ValidatingPolicies (CEL-native, policies.kyverno.io/v1)",
    "webhook": "every rule of B1 against the cluster view, and the defaults (mutating)",
    "webhook+cel": "both of the above (the fail-open install)",
}


def gateway(tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": f"wp-{tag}-__N__", "labels": {"app": "bench", "istio.io/waypoint-for": "service"}},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


def pod(tag: str) -> dict[str, Any]:
    """A labelled Pod bound to the waypoint for all traffic: the one for services only would be
    denied by the webhook (UnsupportedTrafficType, R5), which no stateless policy sees."""
    obj = payloads.api_pod(tag)
    obj["metadata"]["labels"]["istio.io/use-waypoint"] = "waypoint-all"
    return obj


WORKLOADS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "services": ("/api/v1/namespaces/bench/services", payloads.api_service),
    "pods": ("/api/v1/namespaces/bench/pods", pod),
    "gateways": ("/apis/gateway.networking.k8s.io/v1/namespaces/bench/gateways", gateway),
}


class Histograms:
    """The API server's admission-step histogram, read before and after a run."""

    NAME = "apiserver_admission_step_admission_duration_seconds_bucket"

    def __init__(self, cp: ControlPlane) -> None:
        pki = cp.workdir / "pki"
        self.url, self.verify, self.cert = (
            f"{cp.url}/metrics",
            str(pki / "ca.crt"),
            (str(pki / "admin.crt"), str(pki / "admin.key")),
        )

    def read(self) -> dict[tuple[str, float], float]:
        text = requests.get(self.url, verify=self.verify, cert=self.cert, timeout=10).text
        out: dict[tuple[str, float], float] = {}
        for m in re.finditer(rf"^{self.NAME}\{{([^}}]*)\}} (\S+)$", text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if labels.get("operation") != "CREATE" or labels.get("rejected") == "true":
                continue
            key = (labels.get("type", ""), float(labels["le"]))
            out[key] = out.get(key, 0.0) + float(m.group(2))
        return out

    @staticmethod
    def p99(before: dict[tuple[str, float], float], after: dict[tuple[str, float], float], step: str) -> float | None:
        buckets = sorted((le, after[(t, le)] - before.get((t, le), 0.0)) for t, le in after if t == step)
        if not buckets or buckets[-1][1] <= 0:
            return None
        want, prev_le, prev_n = 0.99 * buckets[-1][1], 0.0, 0.0
        for le, n in buckets:
            if n >= want:
                if le == float("inf"):
                    return prev_le * 1000
                return (prev_le + (le - prev_le) * (want - prev_n) / max(n - prev_n, 1e-9)) * 1000
            prev_le, prev_n = le, n
        return None


@contextmanager
def configured(
    name: str, cp: ControlPlane, k: Kubectl, work: Path, kyverno_exe: Path | None
) -> Iterator[Webhook | None]:
    """The API server with configuration ``name`` in force, effective before the run starts; yields
    the webhook's process when the configuration has one."""
    policies = str(ROOT / "manifests" / "fail-open" / "policy.yaml")
    wh: Webhook | None = None
    with ExitStack() as stack:
        if "cel" in name:
            k("apply", "-f", policies)
            stack.callback(lambda: k("delete", "-f", policies, "--ignore-not-found", check=False))
        if name.startswith("webhook"):
            wh = start_webhook(cp, k, work / f"wh-{time.monotonic_ns()}", ["--audit"])
            stack.callback(wh.stop)
            pin(process_tree(wh.proc.pid), "1")
            register(k, wh)
            stack.callback(unregister, k)
        if name.startswith("kyverno"):
            assert kyverno_exe is not None
            style = "validatingpolicy" if name == "kyverno-vpol" else "clusterpolicy"
            stack.enter_context(kyverno.running(cp, k, kyverno_exe, work / f"kyverno-{time.monotonic_ns()}", style))
        if name != "none":
            wait_effective(k)
        yield wh


def measure(load: Load, cp: ControlPlane, hist: Histograms, work: Path, tag: str, seconds: int) -> dict[str, Any]:
    pki = cp.workdir / "pki"
    out: dict[str, Any] = {}
    for workload, (path, make) in WORKLOADS.items():
        for mode, n in LOADS:
            body = payloads.write(work / f"{tag}-{workload}-{mode}{n}.json", make(f"{tag}{mode[0]}{n}"))
            before = hist.read()
            r = load.run(
                cp.url + path, body, rate=n if mode == "open" else 0, conns=n if mode == "closed" else 20,
                duration=f"{seconds}s", ca=str(pki / "ca.crt"), cert=str(pki / "admin.crt"),
                key=str(pki / "admin.key"), expect="201",
            )  # fmt: skip
            after = hist.read()
            r["step_validate_p99_ms"] = Histograms.p99(before, after, "validate")
            r["step_admit_p99_ms"] = Histograms.p99(before, after, "admit")
            out[f"{workload}/{mode}{n}"] = r
    return out


def clear(k: Kubectl) -> None:
    """Delete the objects the runs created (label app=bench; the waypoint stays), as collections."""
    for path in ("/api/v1/namespaces/bench/pods", "/apis/gateway.networking.k8s.io/v1/namespaces/bench/gateways",
                 "/api/v1/namespaces/bench/services"):  # fmt: skip
        if k("delete", "--raw", f"{path}?labelSelector=app%3Dbench", check=False).returncode != 0:
            k("delete", path.rsplit("/", 1)[1], "-n", "bench", "-l", "app=bench", "--wait=true", check=False)
    time.sleep(2)


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per configuration and run: medians over rounds of each figure and of its ratio to none."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for config in rounds[0]:
        out[config] = {}
        for run in rounds[0][config]:
            row: dict[str, float] = {}
            for q in ("p50_ms", "p99_ms", "p999_ms", "rps"):
                row[q] = statistics.median(r[config][run][q] for r in rounds)
                row[f"{q}_x"] = statistics.median(r[config][run][q] / max(r["none"][run][q], 1e-9) for r in rounds)
            for q in ("step_validate_p99_ms", "step_admit_p99_ms"):
                got = [r[config][run][q] for r in rounds if r[config][run].get(q) is not None]
                row[q] = statistics.median(got) if got else float("nan")
            out[config][run] = row
    return out


def table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| configuration | run | p50 ms (x none) | p99 ms (x none) | p99.9 ms (x none) | creates/s (x none) | API server step p99 ms: validate / admit |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for config, runs in summary.items():
        for run, r in runs.items():
            lines.append(
                f"| {config} | {run} | {r['p50_ms']:.1f} ({r['p50_ms_x']:.2f}) | {r['p99_ms']:.1f} ({r['p99_ms_x']:.2f}) | "
                f"{r['p999_ms']:.1f} ({r['p999_ms_x']:.2f}) | {r['rps']:.0f} ({r['rps_x']:.2f}) | "
                f"{r['step_validate_p99_ms']:.1f} / {r['step_admit_p99_ms']:.1f} |"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--configs", default="none,cel,webhook,webhook+cel")
    ap.add_argument("--no-kyverno", action="store_true", help="leave Kyverno out (it is built on first use)")
    ap.add_argument("--from-rounds", type=Path, help="summarise the complete rounds of an earlier run's rounds.json")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiling pass (py-spy) after the rounds")
    args = ap.parse_args()
    if args.from_rounds:
        earlier: list[dict[str, dict[str, Any]]] = json.loads(args.from_rounds.read_text())
        return write_results([r for r in earlier if set(r) == set(earlier[0])])
    configs = args.configs.split(",") + ([] if args.no_kyverno else ["kyverno", "kyverno-vpol"])
    kyverno_exe = None if args.no_kyverno else kyverno.build()
    work = Path(tempfile.mkdtemp(prefix="waypoint-peers-"))
    cp, k, load = pinned_cluster(work)
    k.apply(
        gateway("all")
        | {"metadata": {"name": "waypoint-all", "namespace": "bench", "labels": {"istio.io/waypoint-for": "all"}}}
    )
    make_ready(k, "waypoint-all", "bench")
    if kyverno_exe is not None:
        kyverno.install(k)
    hist = Histograms(cp)
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        for rnd in range(args.rounds):
            rounds.append({})
            # What a configuration created is deleted before the next one (every run starts on the
            # same store); the order rotates per round all the same.
            for config in configs[rnd % len(configs) :] + configs[: rnd % len(configs)]:
                print(f"round {rnd + 1}/{args.rounds}: {config}…", file=sys.stderr)
                with configured(config, cp, k, work, kyverno_exe):
                    rounds[-1][config] = measure(load, cp, hist, work, f"r{rnd}{configs.index(config)}", args.seconds)
                clear(k)
                (work / "rounds.json").write_text(json.dumps(rounds))  # kept if a later run fails
        if not args.no_profile:
            profiled(cp, k, load, work)
    finally:
        cp.stop()
    return write_results(rounds)


def profiled(cp: ControlPlane, k: Kubectl, load: Load, work: Path, seconds: int = 20) -> None:
    """A pass of its own after the rounds: the shipped webhook under Services created at 100/s, sampled
    by py-spy twice (a flame graph, then the raw stacks the stage table is made of)."""
    pki = cp.workdir / "pki"
    raw = work / "profile.txt"
    outputs = (("flamegraph", RESULTS / "peers-profile.svg"), ("raw", raw))
    with configured("webhook", cp, k, work, None) as wh:
        assert wh is not None
        for fmt, out in outputs:
            sampler = profile.record(wh.proc.pid, seconds, out, fmt)
            time.sleep(1)
            body = payloads.write(work / f"profile-{fmt}.json", payloads.api_service(f"prof{fmt[0]}"))
            load.run(cp.url + WORKLOADS["services"][0], body, rate=100, conns=20, duration=f"{seconds - 3}s",
                     ca=str(pki / "ca.crt"), cert=str(pki / "admin.crt"), key=str(pki / "admin.key"), expect="201")  # fmt: skip
            try:
                _, err = sampler.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:  # py-spy writes what it has on SIGINT
                sampler.send_signal(signal.SIGINT)
                _, err = sampler.communicate(timeout=30)
            if sampler.returncode != 0 and not out.exists():
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    clear(k)
    summary = profile.summarise(raw.read_text().splitlines())
    (RESULTS / "peers-profile.md").write_text(
        "# The webhook under the API server's traffic (Services at 100/s, py-spy)\n\n" + summary.markdown() + "\n"
    )
    print(summary.markdown(), file=sys.stderr)


def write_results(rounds: list[dict[str, dict[str, Any]]]) -> int:
    summary = summarise(rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "placement": "kube-apiserver and etcd on CPU 0; the admission server and the load client on CPU 1",
        "checks": CHECKS,
        "rounds": rounds,
        "summary": summary,
    }
    (RESULTS / "peers.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "peers.md").write_text(table(summary) + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
