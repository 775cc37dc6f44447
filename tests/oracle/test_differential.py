"""The webhook agrees with the real istiod on how every scenario resolves.

All scenarios (tests/oracle/scenarios.py, one per rule) are applied at once with the webhook not
registered; istiod writes its ``istio.io/WaypointBound`` condition on each Service, ServiceEntry
and WorkloadEntry, and the webhook under test (live view, same cluster) judges the same stored
objects. Each pair must agree:

| istiod | the webhook |
|---|---|
| False, WaypointIsNotReady | WaypointNotFound, WaypointNotReady, or a syntax denial of the value (InvalidUseWaypoint, InvalidUseWaypointNamespace: istiod looks the value up as a name and finds nothing) |
| False, AttachmentDenied | AttachmentDenied |
| False, UnsupportedTrafficType | UnsupportedTrafficType |
| True, or no condition | none of the findings above |
| a canary problem in the message | a canary finding, and none without one |
| a Pod with a waypoint in ``/debug/ambientz`` | none of the findings above |
| a Pod with its own reference and no waypoint there | one of them |

What istiod cannot show, and so is not compared (``NOT_OBSERVABLE``): severities (deny or warn);
``NotAWaypoint`` (a policy warning: istiod binds any ready Gateway, W1); a waypoint with no usable
address (W1: istiod reports the object bound while ztunnel gets no address, so the webhook warns
``WaypointNotReady``); capture (``NotCaptured``, decided by the CNI); and the Gateway-side findings,
W2's name lengths among them (they show only when istiod's deployment controller deploys a
waypoint, and the replay mode turns it off).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import requests

from testkit.builders import review_body
from testkit.harness import Kubectl, patch_status, probe_denial, wait_until, webhook_configs
from testkit.webhook_process import Webhook
from tests.oracle.istiod_process import Istiod, start_istiod, stop
from tests.oracle.scenarios import Case, cases, gw, ns, svc

pytestmark = pytest.mark.oracle

CASES = cases()
FAILURES = {
    "WaypointNotFound",
    "WaypointNotReady",
    "AttachmentDenied",
    "UnsupportedTrafficType",
    "UnevaluableAllowedRoutes",
    "InvalidUseWaypoint",
    "InvalidUseWaypointNamespace",
}
AGREES = {
    "WaypointIsNotReady": {"WaypointNotFound", "WaypointNotReady", "InvalidUseWaypoint", "InvalidUseWaypointNamespace"},
    "AttachmentDenied": {"AttachmentDenied"},
    "UnsupportedTrafficType": {"UnsupportedTrafficType"},
}
NOT_OBSERVABLE = {
    "unusable address": "W1: istiod reports a waypoint with only unusable addresses as bound; ztunnel bypasses it",
}
PLURAL = {
    "Service": "services",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "WorkloadEntry": "workloadentries.networking.istio.io",
    "Pod": "pods",
}
ORDER = ("Namespace", "GatewayClass", "Gateway", "Service", "ServiceEntry", "WorkloadEntry", "Pod")


def _apply_all(k: Kubectl, all_cases: list[Case]) -> None:
    objects = [o for c in all_cases for o in c.objects]
    for kind in ORDER:
        docs = [{key: v for key, v in o.items() if key != "status"} for o in objects if o["kind"] == kind]
        if docs:
            k.apply(docs)
    for o in objects:
        if o["kind"] in ("Gateway", "Pod") and "status" in o:
            patch_status(k, o["kind"], o["metadata"]["name"], o["metadata"]["namespace"], o["status"])


def _stored(k: Kubectl, prefix: str = "dt") -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for kind, plural in PLURAL.items():
        for item in json.loads(k("get", plural, "-A", "-o", "json").stdout)["items"]:
            m = item["metadata"]
            if m["namespace"].startswith(prefix):
                out[(kind, m["namespace"], m["name"])] = item
    return out


def _condition(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "istio.io/WaypointBound":
            return (c.get("status", ""), c.get("reason", ""), c.get("message", ""))
    return None


def _verdict(wh: Webhook, kind: str, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The webhook's findings on the stored object, as (code, field, message)."""
    obj = {k: v for k, v in obj.items() if k != "status"}
    r = requests.post(
        wh.url + "/validate",
        data=review_body(obj, uid="oracle", kind=kind),
        headers={"Content-Type": "application/json"},
        verify=str(wh.ca),
        timeout=10,
    )
    resp = r.json()["response"]
    found = [
        (c["reason"], c.get("field", ""), c.get("message", ""))
        for c in (resp.get("status") or {}).get("details", {}).get("causes", [])
    ]
    for w in resp.get("warnings", []):
        code, _, message = w.partition(": ")
        found.append((code, "", message))
    return found


def _is_canary(finding: tuple[str, str, str]) -> bool:
    code, field, message = finding
    return code.startswith("Canary") or "use-waypoint-canary" in field or "canary" in message.lower()


def _disagreement(condition: tuple[str, str, str] | None, findings: list[tuple[str, str, str]]) -> str | None:
    primary = {f[0] for f in findings if not _is_canary(f)} & FAILURES
    # NotAWaypoint and an unusable address are not istiod's to show, for a canary as for a primary.
    canary = [
        f for f in findings if _is_canary(f) and f[0] != "NotAWaypoint" and "no Hostname or IP address" not in f[2]
    ]
    if condition is not None and condition[0] == "False":
        if not primary & AGREES.get(condition[1], set()):
            return f"istiod {condition[1]} ({condition[2]}), the webhook {sorted(primary) or 'nothing'}"
        return None
    unexplained = {
        c
        for c in primary
        if not (c == "WaypointNotReady" and any("no Hostname or IP address" in f[2] for f in findings if f[0] == c))
    }
    if unexplained:
        return f"istiod {condition[1] if condition else 'no condition'}, the webhook {sorted(unexplained)}"
    istiod_canary = condition is not None and "canary" in condition[2].lower()
    if istiod_canary != bool(canary):
        return f"canary: istiod {condition[2] if condition else '-'!r}, the webhook {canary or 'nothing'}"
    return None


def _pod_waypoints(istiod: Istiod) -> dict[tuple[str, str], bool]:
    """/debug/ambientz: for each Pod istiod knows (it needs an IP), whether it resolved a waypoint."""
    with urllib.request.urlopen(istiod.url + "/debug/ambientz", timeout=10) as r:
        workloads = json.loads(r.read()).get("workloads") or []
    return {(w["namespace"], w["name"]): "waypoint" in w for w in workloads if w.get("workloadType") == "POD"}


def _pod_disagreement(own_reference: bool, bound: bool | None, findings: list[tuple[str, str, str]]) -> str | None:
    """Pods carry no condition: a waypoint in /debug/ambientz must mean no failure finding, and no
    waypoint for a Pod with its own reference must mean one. (Without an own reference, "none"
    and an inherited workload mismatch, R3, are silent on both sides.)"""
    failures = {f[0] for f in findings} & FAILURES
    if bound is None:
        return "istiod does not list the Pod"
    if bound and failures:
        return f"istiod bound it, the webhook {sorted(failures)}"
    if not bound and own_reference and not failures:
        return "istiod resolved no waypoint, the webhook found nothing wrong"
    return None


def _snapshot(k: Kubectl, wh: Webhook, istiod: Istiod, prefix: str = "dt") -> dict[tuple[str, str, str], Any]:
    stored = _stored(k, prefix)
    pods = _pod_waypoints(istiod)
    out: dict[tuple[str, str, str], Any] = {}
    for key, obj in stored.items():
        state: Any = pods.get(key[1:]) if key[0] == "Pod" else _condition(obj)
        out[key] = (state, sorted(_verdict(wh, key[0], obj)))
    return out


def test_the_webhook_agrees_with_istiod_on_every_scenario(
    oracle_kubectl: Kubectl, istiod: Istiod, unregistered_webhook: Webhook
) -> None:
    assert len(CASES) >= 60 and sum(len(c.observe) for c in CASES) >= 60
    _apply_all(oracle_kubectl, CASES)
    expected = {key for c in CASES for key in c.observe}
    start, previous, snap = time.monotonic(), None, {}
    while time.monotonic() - start < 90:  # until both sides have settled: two equal snapshots, 5 s in
        snap = _snapshot(oracle_kubectl, unregistered_webhook, istiod)
        if snap == previous and set(snap) >= expected and time.monotonic() - start > 5:
            break
        previous = snap
        time.sleep(1.5)
    assert istiod.alive(), istiod.log.read_text()[-3000:]
    report, bad = [], []
    objects = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for c in CASES for o in c.objects
    }
    for c in CASES:
        for key in c.observe:
            state, findings = snap[key]
            if key[0] == "Pod":
                own = (objects[key]["metadata"]["labels"].get("istio.io/use-waypoint") or "none") != "none"
                problem = _pod_disagreement(own, state, findings)
                shown = {True: "waypoint", False: "no waypoint", None: "not listed"}[state]
            else:
                problem = _disagreement(state, findings)
                shown = state[1] if state else "-"
            report.append(
                f"{'DISAGREE' if problem else 'agree   '} {c.id}: {key[0]} {key[1]}/{key[2]}: "
                f"istiod {shown}; webhook {[f[0] for f in findings] or '-'}"
            )
            if problem:
                bad.append(f"{c.id} ({key[0]} {key[1]}/{key[2]}): {problem}")
    print("\n".join(report))
    assert not bad, f"{len(bad)} disagreement(s) with istiod:\n" + "\n".join(bad)


@pytest.mark.crashes_istiod
def test_istiod_crashes_on_an_unevaluable_selector_unless_the_webhook_refuses_it(
    oracle_kubectl: Kubectl, istiod: Istiod, unregistered_webhook: Webhook
) -> None:
    """A5, end to end (last: it crashes the session's istiod). A Gateway whose mesh listener has an
    unparsable selector, created before the webhook was installed, is harmless until something
    references it. With the webhook registered the reference is denied and istiod keeps running;
    without it, istiod dies on the reference, and again when restarted."""
    k = oracle_kubectl
    bad = gw(
        "wp",
        "crash-i",
        routes={
            "from": "Selector",
            "selector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]},
        },
    )
    k.apply([ns("crash"), ns("crash-i")])
    k.apply({key: v for key, v in bad.items() if key != "status"})
    patch_status(k, "Gateway", "wp", "crash-i", bad["status"])
    reference = svc("s", "crash", {"istio.io/use-waypoint": "wp", "istio.io/use-waypoint-namespace": "crash-i"})
    port = int(unregistered_webhook.url.rsplit(":", 1)[1])
    configs = webhook_configs(k, port, unregistered_webhook.ca.read_bytes())
    k.apply(configs)
    probe_denial(k)
    denied = k.apply(reference, check=False)
    assert denied.returncode != 0 and "UnevaluableAllowedRoutes" in denied.stderr, denied.stderr
    time.sleep(3)
    assert istiod.alive(), "istiod died although the reference was refused"
    # and a new Gateway like it is refused at admission
    refused = k.apply(
        {
            key: v
            for key, v in gw(
                "wp2", "crash-i", routes=bad["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]
            ).items()
            if key != "status"
        },
        check=False,
    )
    assert refused.returncode != 0 and "InvalidAllowedRoutes" in refused.stderr, refused.stderr
    for doc in configs:  # without the webhook
        k("delete", doc["kind"].lower(), doc["metadata"]["name"])
    wait_until(lambda: k.apply(reference, check=False).returncode == 0, 30, "the reference to be admitted")
    wait_until(lambda: not istiod.alive(), 30, "istiod to crash on the unevaluable selector")
    assert "nil pointer" in istiod.log.read_text() or "panic" in istiod.log.read_text()
    assert _crashes_again(k, istiod), "istiod came back up with the unevaluable selector still referenced"


def _crashes_again(k: Kubectl, old: Istiod) -> bool:
    """Restart istiod against the same cluster; True when it dies again (A5: on every restart)."""
    try:
        again = start_istiod(k.kubeconfig, old.log.parent / "restart")
    except AssertionError:
        return True  # died before it was ready
    try:
        wait_until(lambda: not again.alive(), 30, "istiod to crash again after the restart")
        return True
    finally:
        stop(again.proc)
