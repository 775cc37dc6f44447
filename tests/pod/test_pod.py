"""The shipped Deployment, unchanged, boots and serves from the image built from the Dockerfile.

Tests run in file order against one container; the last one stops it with SIGTERM.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from testkit.builders import ns_labels, review_body
from testkit.controlplane import process_tree
from testkit.harness import policy_reports, probe_denial, wait_until, webhook_configs
from tests.pod import image as images
from tests.pod.container import CONTAINER, MEASURED, Pod

# kubelet does not verify the certificates of HTTPS probes, and neither do these checks
pytestmark = [pytest.mark.pod, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def _budget(probe: dict[str, int]) -> float:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_probes_answer_within_their_budgets(pod: Pod) -> None:
    """startup, then readiness and liveness: each first 200 within initialDelay + period x failureThreshold."""
    probes = pod.run.probes
    assert set(pod.first_ok) == set(probes), f"probes never answered 200: {set(probes) - set(pod.first_ok)}"
    startup = pod.first_ok["startupProbe"]
    assert startup <= _budget(probes["startupProbe"]), pod.first_ok
    for name in ("readinessProbe", "livenessProbe"):
        assert pod.first_ok[name] - startup <= _budget(probes[name]), (name, pod.first_ok)
    for name in probes:  # and each answer comes within the probe's own timeout
        t = time.monotonic()
        assert pod.probe(name).status_code == 200
        assert time.monotonic() - t < probes[name].get("timeoutSeconds", 1)


def test_runs_as_the_configured_user_without_capabilities(pod: Pod) -> None:
    pids = process_tree(pod.pid())
    assert len(pids) >= 3, "expected the gunicorn master and its workers"
    for pid in pids:
        st = _status(pid)
        assert st["Uid"].split() == [str(pod.run.uid)] * 4, (pid, st["Uid"])
        assert st["Gid"].split() == [str(pod.run.gid)] * 4, (pid, st["Gid"])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, (pid, cap, st[cap])
        assert st["NoNewPrivs"] == "1"
        assert st["Seccomp"] == "2"  # filtered: the runtime's default profile
    root = next(
        line.split() for line in Path(f"/proc/{pids[0]}/mounts").read_text().splitlines() if line.split()[1] == "/"
    )
    assert "ro" in root[3].split(","), root


def test_kubectl_is_denied_warned_and_mutated_through_the_shipped_configurations(pod: Pod) -> None:
    k = pod.kubectl
    k.apply(webhook_configs(k, pod.run.port, pod.ca.read_bytes()))
    probe_denial(k)
    ns = f"pod-{uuid.uuid4().hex[:6]}"
    k("create", "namespace", ns)
    denied = k("label", "namespace", ns, "istio.io/use-waypoint=None", check=False)
    assert denied.returncode != 0 and "InvalidUseWaypoint" in denied.stderr, denied.stderr
    k("label", "namespace", ns, "istio.io/dataplane-mode=ambient")
    # M1: a Gateway with only its class gets the HBONE listener (the CRD requires one)
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": ns},
        "spec": {"gatewayClassName": "istio-waypoint"},
    }
    k.apply(gw)
    listeners = json.loads(k("get", "gateway", "waypoint", "-n", ns, "-o", "json").stdout)["spec"]["listeners"]
    assert [(x["name"], x["port"], x["protocol"]) for x in listeners] == [("mesh", 15008, "HBONE")]

    # The live view, over the in-cluster configuration and the shipped RBAC, sees the waypoint:
    # a reference to it is "not ready" (no addresses), where a missing one is "not found".
    def service(waypoint: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"ports": [{"port": 9080}]},
            "metadata": {"name": "reviews", "namespace": ns, "labels": {"istio.io/use-waypoint": waypoint}},
        }

    wait_until(
        lambda: "WaypointNotReady" in k.apply(service("waypoint"), "--dry-run=server").stderr,
        30,
        "the container's watch to see the Gateway",
    )
    missing = k.apply(service("nowhere"))
    assert "Warning: WaypointNotFound" in missing.stderr, missing.stderr


def test_the_audit_runs_beside_the_workers_and_reports_from_the_container(pod: Pod) -> None:
    """``--audit`` in the shipped args: a process beside the workers, in-cluster configuration,
    the shipped Role for its Lease and ClusterRole for its reports. It finds the Service the
    previous test left pointing at a missing waypoint."""
    import requests

    cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in process_tree(pod.pid())]
    assert sum(b"auditor" in c for c in cmdlines) == 1, cmdlines
    k = pod.kubectl
    report = wait_until(
        lambda: next((r for key, r in policy_reports(k).items() if key[0] == "Service" and key[2] == "reviews"), None),
        60,
        "the audit's report on Service reviews",
    )
    assert [r["rule"] for r in report["results"]] == ["WaypointNotFound"]
    holder = k(
        "get", "lease", "waypoint-webhook-audit", "-n", "waypoint-webhook", "-o", "jsonpath={.spec.holderIdentity}"
    ).stdout
    assert holder, "the container holds the Lease"
    text = wait_until(
        lambda: (t := requests.get(pod.metrics_url, timeout=5).text) and "waypoint_webhook_audit_up 1.0" in t and t,
        30,
        "the audit in /metrics",
    )
    assert 'waypoint_webhook_audit_findings{code="WaypointNotFound"' in text
    assert "waypoint_webhook_audit_leader 1.0" in text
    assert "Traceback" not in pod.logs()


def test_metrics_answer_with_the_reviews_counted(pod: Pod) -> None:
    import requests

    text = requests.get(pod.metrics_url, timeout=5).text
    denied = [
        line
        for line in text.splitlines()
        if line.startswith("waypoint_webhook_admission_requests_total") and 'result="denied"' in line
    ]
    assert denied and sum(float(line.rsplit(" ", 1)[1]) for line in denied) >= 1, text[:2000]


def test_idle_memory_is_recorded(pod: Pod) -> None:
    time.sleep(2)
    rss = pss = 0
    for pid in process_tree(pod.pid()):
        rss += int(_status(pid)["VmRSS"].split()[0])
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        pss += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
    MEASURED["idle memory, master + workers + probe process + auditor (MB)"] = (
        f"RSS {rss / 1024:.0f}, PSS {pss / 1024:.0f}"
    )
    if pod.run.memory_limit:
        assert pss * 1024 < pod.run.memory_limit / 2, (
            f"idle PSS {pss} KiB is over half the limit {pod.run.memory_limit}"
        )


def test_sigterm_drains_an_in_flight_request_and_exits_zero(pod: Pod) -> None:
    """Last: kubelet's stop. A request already being read when SIGTERM arrives is still answered;
    the process exits 0 within terminationGracePeriodSeconds (less the preStop sleep)."""
    body = review_body(ns_labels("x", {"istio.io/use-waypoint": "None"}), uid="drain-1")
    head = (
        f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    ctx = ssl.create_default_context(cafile=str(pod.ca))
    with ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", pod.run.port), timeout=30), server_hostname="127.0.0.1"
    ) as s:
        s.sendall(head + body[:20])
        time.sleep(0.5)  # a worker thread is now reading the body
        stopped = time.monotonic()
        images.podman(pod.env, "kill", "--signal", "TERM", CONTAINER)
        time.sleep(1.0)
        s.sendall(body[20:])
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), answer[:500]
    response = json.loads(rest.split(b"\r\n\r\n", 1)[1])["response"]
    assert response["uid"] == "drain-1" and response["allowed"] is False
    code = subprocess.run(
        ["podman", "wait", CONTAINER], env=pod.env, capture_output=True, text=True, timeout=pod.run.grace_seconds + 10
    )
    elapsed = time.monotonic() - stopped
    assert code.stdout.strip() == "0", f"exit {code.stdout.strip()}:\n{pod.logs()[-3000:]}"
    # kubelet runs the preStop sleep first, inside the same grace period
    assert elapsed + pod.run.pre_stop_seconds <= pod.run.grace_seconds, elapsed
    MEASURED["SIGTERM to exit (s)"] = f"{elapsed:.1f}"


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0
