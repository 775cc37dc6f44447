"""``make bench-memory``: the shipped Deployment's memory on large clusters (issue 18, item 3).

A real kube-apiserver and etcd (the e2e control plane) is filled with objects shaped like real API
output: Pods as a ReplicaSet makes them (owner reference, pod-template-hash, two containers with
env, probes, resources and a projected token volume) and Services applied with kubectl (the
last-applied annotation), all with the managedFields the API server records. Then
``waypoint-webhook serve`` runs with the Deployment's own arguments (read from
manifests/deployment.yaml: 2 workers, ``--audit``, the probe port), and the PSS of its whole
process tree (master, workers, probe process, auditor) is sampled every half second from start
until its audit has finished a full pass and settled. A second replica started beside it (a
standby: it does not hold the Lease) shows what the other replicas cost.

Sizes, each built on the previous one in the same cluster:
  - 5,000 namespaces, 20,000 Pods (none labelled), 5,000 Services, 50 waypoints;
  - 10,000 namespaces, 100,000 Pods (30,000 labelled), 20,000 labelled Services, 1,000 waypoints:
    50,000 consumers.

Results: bench/results/memory.json and a Markdown table (bench/results/memory.md). Loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import queue
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.controlplane import ControlPlane, free_port, spawn  # noqa: E402
from testkit.harness import EXE, Kubectl, apply_identity, install_crds, install_report_crds  # noqa: E402

RESULTS = ROOT / "bench" / "results"
UW = "istio.io/use-waypoint"


@dataclass(frozen=True)
class Size:
    """Totals; ``labelled_*`` of the objects this size adds to the previous one name a waypoint."""

    name: str
    namespaces: int
    pods: int
    labelled_pods: int
    services: int
    labelled_services: int
    waypoints: int


SIZES = (
    Size("20k", 5_000, 20_000, 0, 5_000, 0, 50),
    Size("100k", 10_000, 100_000, 35_000, 20_000, 15_000, 1_000),
)


# -- objects shaped like real API output ----------------------------------------------------------
def _container(name: str, i: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example/team-{i % 97}/{name}:1.{i % 13}.{i % 7}",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{k}", "value": f"value-{i}-{k}"} for k in range(8)]
        + [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "imagePullPolicy": "IfNotPresent",
    }


def pod(i: int, ns: str, waypoint: str | None) -> dict[str, Any]:
    app = f"app-{i % 50}"
    labels = {"app": app, "pod-template-hash": f"{i % 9973:06x}", "team": f"team-{i % 97}"}
    if waypoint:
        labels[UW] = waypoint
    token = {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{i:07d}",
            "namespace": ns,
            "generateName": f"{app}-",
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{i % 9973:06x}",
                    "uid": f"00000000-0000-0000-0000-{i:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [_container("main", i), _container("sidecar-logs", i)],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [token]}}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
    }


def service(i: int, ns: str, waypoint: str | None) -> dict[str, Any]:
    labels = {"app": f"app-{i % 50}", "team": f"team-{i % 97}"}
    if waypoint:
        labels[UW] = waypoint
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i:06d}", "namespace": ns, "labels": labels},
        "spec": {
            "selector": {"app": f"app-{i % 50}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}],
            "clusterIP": "None",
        },
    }
    body["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(body) + "\n"}
    return body


def namespace(i: int) -> dict[str, Any]:
    labels = {"team": f"team-{i % 97}", "istio.io/dataplane-mode": "ambient"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i:05d}", "labels": labels}}


def waypoint(i: int, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": f"wp-{i}", "namespace": ns, "labels": {"istio.io/waypoint-for": "all"}},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    }


def _path(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    kind = obj["kind"]
    if kind == "Namespace":
        return "/api/v1/namespaces"
    if kind == "Gateway":
        return f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways"
    return f"/api/v1/namespaces/{ns}/{kind.lower()}s"


# -- filling the cluster ----------------------------------------------------------------------------
def create_all(cp: ControlPlane, objects: Iterator[dict[str, Any]], threads: int = 12) -> tuple[int, float]:
    """POST every object over keep-alive connections from ``threads`` threads; 409 counts as done."""
    pki = cp.workdir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    work: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=threads * 64)
    errors: list[str] = []
    count = [0]

    def worker() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", cp.port, context=ctx, timeout=60)
        while (obj := work.get()) is not None:
            body = json.dumps(obj).encode()
            for attempt in range(5):
                try:
                    conn.request("POST", _path(obj) + "?fieldManager=kubectl-client-side-apply", body,
                                 {"Content-Type": "application/json"})  # fmt: skip
                    r = conn.getresponse()
                    data = r.read()
                    if r.status in (200, 201, 409):
                        count[0] += 1
                        break
                    if r.status == 429 or r.status >= 500:
                        time.sleep(0.2 * (attempt + 1))
                        continue
                    errors.append(f"{r.status} {data[:200]!r}")
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPSConnection("127.0.0.1", cp.port, context=ctx, timeout=60)
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for obj in objects:
        work.put(obj)
    for _ in pool:
        work.put(None)
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, e.g. {errors[:3]}")
    return count[0], time.monotonic() - started


def objects_for(size: Size, previous: Size | None) -> Iterator[dict[str, Any]]:
    """What ``size`` adds to a cluster that already holds ``previous``."""
    p = previous or Size("", 0, 0, 0, 0, 0, 0)
    for i in range(p.namespaces, size.namespaces):
        yield namespace(i)
    for i in range(p.waypoints, size.waypoints):
        yield waypoint(i, f"ns-{i % size.namespaces:05d}")
    for i in range(p.services, size.services):
        wp = f"wp-{i % size.waypoints}" if i - p.services < size.labelled_services else None
        yield service(i, f"ns-{i % size.namespaces:05d}", wp)
    for i in range(p.pods, size.pods):
        ns = f"ns-{i % size.namespaces:05d}"
        yield pod(i, ns, f"wp-{i % size.waypoints}" if i - p.pods < size.labelled_pods else None)


# -- measuring --------------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants; children started from any of its threads (the sidecars are)."""
    out = [pid]
    try:
        kids = [k for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]
    except OSError:
        return out
    for k in kids:
        out += _tree(int(k))
    return out


def _kib(pid: int, field: str) -> int:
    path = f"/proc/{pid}/smaps_rollup" if field == "Pss" else f"/proc/{pid}/status"
    key = "Pss:" if field == "Pss" else f"{field}:"
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _role(pid: int, master: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if " auditor " in text:
        return "auditor"
    if "webhook.admission.probes" in text:
        return "probes"
    return "master" if pid == master else "worker"


def shipped_args() -> tuple[list[str], str]:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "deployment.yaml").read_text()) if d]
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["memory"]
    return [str(a) for a in container["args"]], str(limit)


def start_replica(
    cp: ControlPlane, work: Path, certs: Path, pin: str | None = None
) -> tuple[subprocess.Popen[bytes], int, Path, int]:
    """The Deployment's container args against ``cp``; returns the process, probe port, log, port."""
    args, _ = shipped_args()
    port, probe = free_port(), free_port()
    replaced = []
    for a in args:
        if a == "--cluster":
            a = f"--kubeconfig={cp.kubeconfig}"
        elif a.startswith("--port="):
            a = f"--port={port}"
        elif a.startswith("--probe-port="):
            a = f"--probe-port={probe}"
        elif a.startswith("--tls-cert="):
            a = f"--tls-cert={certs / 'tls.crt'}"
        elif a.startswith("--tls-key="):
            a = f"--tls-key={certs / 'tls.key'}"
        replaced.append(a)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"), "POD_NAMESPACE": "waypoint-webhook"}
    log = work / "serve.log"
    taskset = ["taskset", "-c", pin] if pin else []
    cmd = [*taskset, EXE, *replaced, "--host", "127.0.0.1", "--log-level", "warning"]
    return spawn(cmd, log.open("wb"), env=env), probe, log, port


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def sample(proc: subprocess.Popen[bytes], probe: int, log: Path, settle: float, leader: bool) -> dict[str, Any]:
    """PSS of the replica's tree every 0.5 s until it is ready and (leader) its audit passed."""
    started, peak, peak_roles, done_at = time.monotonic(), 0, {}, None
    ready_at = None
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        pids = _tree(proc.pid)
        roles: dict[str, list[int]] = {}
        for pid in pids:
            roles.setdefault(_role(pid, proc.pid), []).append(pid)
        total = sum(_kib(p, "Pss") for p in pids)
        if total > peak:
            peak, peak_roles = total, {r: sum(_kib(p, "Pss") for p in ps) for r, ps in roles.items()}
        try:
            text = requests.get(f"http://127.0.0.1:{probe}/metrics", timeout=5).text
            ready = requests.get(f"http://127.0.0.1:{probe}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            text, ready = "", False
        if ready and ready_at is None:
            ready_at = time.monotonic() - started
        passed = (_metric(text, "waypoint_webhook_audit_last_full_pass_timestamp_seconds") or 0) > 0
        if ready and (passed or not leader) and done_at is None:
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at >= settle:
            break
        assert time.monotonic() - started < 1200, "the replica did not finish in 20 minutes"
        time.sleep(0.5)
    steady: dict[str, dict[str, Any]] = {r: {"pss_mib": round(sum(_kib(p, "Pss") for p in ps) / 1024, 1),
                  "rss_mib": [round(_kib(p, "VmRSS") / 1024, 1) for p in ps],
                  "peak_rss_mib": [round(_kib(p, "VmHWM") / 1024, 1) for p in ps]}
              for r, ps in roles.items()}  # fmt: skip
    return {
        "ready_seconds": round(ready_at or 0, 1),
        "audit_objects": _metric(text, "waypoint_webhook_audit_objects"),
        "full_pass_seconds": _metric(text, "waypoint_webhook_audit_full_pass_duration_seconds"),
        "peak_pss_mib": round(peak / 1024, 1),
        "peak_by_process_mib": {r: round(v / 1024, 1) for r, v in peak_roles.items()},
        "steady_pss_mib": round(sum(v["pss_mib"] for v in steady.values()), 1),
        "steady": steady,
    }


def measure(cp: ControlPlane, work: Path, certs: Path, settle: float) -> dict[str, Any]:
    leader_proc, probe, log, _ = start_replica(cp, work / "leader", certs)
    try:
        leader = sample(leader_proc, probe, log, settle, leader=True)
        standby_proc, sprobe, slog, _ = start_replica(cp, work / "standby", certs)
        try:
            standby = sample(standby_proc, sprobe, slog, settle, leader=False)
        finally:
            standby_proc.terminate()
            standby_proc.wait(30)
    finally:
        leader_proc.terminate()
        leader_proc.wait(30)
    return {"leader": leader, "standby": standby}


def table(out: dict[str, Any]) -> str:
    lines = [
        f"Measured {out['date']} on {out['machine']}; memory limit in manifests/deployment.yaml: {out['limit']}.",
        "",
        "| cluster | replica | ready | peak PSS (whole pod) | settled PSS | settled: master / workers / probes / auditor |",
        "|---|---|---|---|---|---|",
    ]
    for r in out["sizes"].values():
        for role in ("leader", "standby"):
            m = r[role]
            parts = " / ".join(
                f"{m['steady'].get(k, {}).get('pss_mib', 0)}" for k in ("master", "worker", "probes", "auditor")
            )
            lines.append(
                f"| {r['label']} | {role} | {m['ready_seconds']} s | {m['peak_pss_mib']} MiB | "
                f"{m['steady_pss_mib']} MiB | {parts} MiB |"
            )
    lines.append("")
    for r in out["sizes"].values():
        w = r["leader"]["steady"].get("worker", {})
        lines.append(f"- {r['label']}: worker RSS {w.get('rss_mib')} MiB (peak {w.get('peak_rss_mib')}); "
                     f"audit peak RSS {r['leader']['steady'].get('auditor', {}).get('peak_rss_mib')} MiB; "
                     f"filled in {r['fill_seconds']} s")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20k,100k", help="comma-separated: 20k, 100k (each builds on the last)")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds measured after the audit's full pass")
    args = ap.parse_args()
    wanted = args.sizes.split(",")
    _, limit = shipped_args()
    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "limit": limit,
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(work / "cp", apiserver_args=["--max-requests-inflight=800"])
        try:
            cp.start()
            k = Kubectl(cp.kubeconfig)
            install_crds(k)
            apply_identity(k)
            install_report_crds(k)
            certs = work / "certs"
            subprocess.run([EXE, "certs", "--out", str(certs), "--ip", "127.0.0.1"], check=True, capture_output=True)
            previous = None
            for size in SIZES:
                n, seconds = create_all(cp, objects_for(size, previous))
                print(f"{size.name}: created {n} objects in {seconds:.0f}s", flush=True)
                previous = size
                if size.name not in wanted:
                    continue
                label = (f"{size.namespaces:,} ns, {size.pods:,} Pods, {size.services:,} Services, "
                         f"{size.labelled_pods + size.labelled_services:,} consumers")  # fmt: skip
                result = measure(cp, work / size.name, certs, args.settle)
                out["sizes"][size.name] = {"label": label, "fill_seconds": round(seconds), **result}
                print(json.dumps(result), flush=True)
        finally:
            cp.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(out, indent=2) + "\n")
    md = table(out)
    (RESULTS / "memory.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
