"""A7 on the real istiod: for every AuthorizationPolicy with ``targetRefs``, the webhook's verdict
agrees with istiod's ``WaypointAccepted`` condition, and in the reverse direction, unbinding a
Service is predicted (``PolicyEnforcementLost``) before istiod flips the policy's condition after.

| istiod's WaypointAccepted | the webhook |
|---|---|
| True, Accepted | none of PolicyTargetNotBound, PolicyTargetNotFound, PolicyTargetNotIstioWaypoint |
| False, AncestorNotBound (whatever the cause) | PolicyTargetNotBound, naming the cause |
| False, TargetNotFound | PolicyTargetNotFound |

Where istiod's status is not reliable, and the webhook is deliberately more precise (documented
in ``MORE_PRECISE``, the cases themselves still run): Z7, ``kind: Service`` with group
``networking.istio.io`` is ``Accepted`` but never applied (the webhook denies it). Routes are not
compared here: their ``ResolvedWaypoints`` needs istiod's Gateway API status writer, which the
replay mode keeps off so that the tests own each Gateway's addresses; Z10 says what it would
show. The selector policies' ``ZtunnelAccepted`` is not compared either (Z6: some never get it).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import requests

from testkit.builders import review_body
from testkit.harness import Kubectl, patch_status
from testkit.webhook_process import Webhook
from tests.oracle.istiod_process import Istiod
from tests.oracle.scenarios import UW, gw, ns, svc

pytestmark = pytest.mark.oracle

NS = "pz-a"
TARGET_CODES = {"PolicyTargetNotBound", "PolicyTargetNotFound", "PolicyTargetNotIstioWaypoint", "InvalidPolicyTarget"}
AGREES = {("False", "AncestorNotBound"): "PolicyTargetNotBound", ("False", "TargetNotFound"): "PolicyTargetNotFound"}
MORE_PRECISE = {
    "wrong-group": (
        "True",
        "InvalidPolicyTarget",
        "Z7: istiod accepts kind Service of group networking.istio.io; no waypoint applies it",
    )
}


def _policy(name: str, target: str, group: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRefs": [{"group": group, "kind": "Service", "name": target}],
            "action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}],
        },
    }


SERVICES = {
    "bound": {UW: "wp"},
    "unlabelled": {},
    "optout": {UW: "none"},
    "to-missing": {UW: "ghost"},
    "to-workload": {UW: "wl"},
    "to-pending": {UW: "pending"},
    "unbind-me": {UW: "wp"},
}
POLICIES = [_policy(f"ap-{s}", s) for s in SERVICES] + [
    _policy("ap-gone", "nope"),
    _policy("wrong-group", "bound", "networking.istio.io"),
]


def _conditions(k: Kubectl) -> dict[str, tuple[str, str, str]]:
    out = {}
    for item in json.loads(k("get", "authorizationpolicies", "-n", NS, "-o", "json").stdout)["items"]:
        for c in (item.get("status") or {}).get("conditions") or []:
            if str(c.get("type", "")).endswith("WaypointAccepted"):
                out[item["metadata"]["name"]] = (c.get("status", ""), c.get("reason", ""), c.get("message", ""))
    return out


def _codes(
    wh: Webhook, obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> dict[str, str]:
    body = review_body(obj, uid="oracle-a7", operation=operation, old=old)
    r = requests.post(
        wh.url + "/validate", data=body, headers={"Content-Type": "application/json"}, verify=str(wh.ca), timeout=10
    )
    resp = r.json()["response"]
    out = {c["reason"]: c.get("message", "") for c in (resp.get("status") or {}).get("details", {}).get("causes", [])}
    for w in resp.get("warnings", []):
        code, _, message = w.partition(": ")
        out[code] = message
    return out


def _settled(
    k: Kubectl, names: set[str], want: dict[str, tuple[str, str]] | None = None
) -> dict[str, tuple[str, str, str]]:
    deadline, conditions = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        conditions = _conditions(k)
        if set(conditions) >= names and all(conditions[n][:2] == v for n, v in (want or {}).items()):
            break
        time.sleep(1)
    return conditions


def _disagreements(conditions: dict[str, tuple[str, str, str]], verdicts: dict[str, dict[str, str]]) -> list[str]:
    bad = []
    for name, (status, reason, message) in conditions.items():
        found = set(verdicts[name]) & TARGET_CODES
        if name in MORE_PRECISE:
            want_status, code, _ = MORE_PRECISE[name]
            if status != want_status or code not in found:
                bad.append(
                    f"{name}: istiod {status}/{reason}, the webhook {sorted(found)} (documented: {MORE_PRECISE[name][2]})"
                )
        elif status == "True" and found:
            bad.append(f"{name}: istiod Accepted, the webhook {sorted(found)}")
        elif status == "False" and AGREES.get((status, reason)) not in found:
            bad.append(f"{name}: istiod {reason} ({message}), the webhook {sorted(found) or 'nothing'}")
    return bad


def test_policy_targets_agree_with_istiod_both_ways(
    oracle_kubectl: Kubectl, istiod: Istiod, unregistered_webhook: Webhook
) -> None:
    k, wh = oracle_kubectl, unregistered_webhook
    gateways = [
        gw("wp", NS),
        gw("wl", NS, labels={"istio.io/waypoint-for": "workload"}),
        gw("pending", NS, addresses=None),
    ]
    services = [svc(name, NS, labels) for name, labels in SERVICES.items()]
    k.apply([ns(NS), *[{a: v for a, v in g.items() if a != "status"} for g in gateways], *services])
    for g in gateways:
        if "status" in g:
            patch_status(k, "Gateway", g["metadata"]["name"], NS, g["status"])
    k.apply(POLICIES)
    names = {p["metadata"]["name"] for p in POLICIES}
    conditions = _settled(k, names)
    assert set(conditions) == names, (conditions, istiod.log.read_text()[-2000:])
    verdicts = {p["metadata"]["name"]: _codes(wh, p) for p in POLICIES}
    assert not _disagreements(conditions, verdicts), (_disagreements(conditions, verdicts), conditions, verdicts)
    # Both sides really judged: the bound one is accepted, each cause of not-bound is named by the webhook.
    assert conditions["ap-bound"][:2] == ("True", "Accepted") and conditions["ap-gone"][:2] == (
        "False",
        "TargetNotFound",
    )
    assert "workload" in verdicts["ap-to-workload"]["PolicyTargetNotBound"]
    assert "no address yet" in verdicts["ap-to-pending"]["PolicyTargetNotBound"]

    # Z14, the reverse direction: the webhook says what the UPDATE stops, then istiod agrees afterwards.
    old = next(s for s in services if s["metadata"]["name"] == "unbind-me")
    new = copy.deepcopy(old)
    del new["metadata"]["labels"][UW]
    predicted = _codes(wh, new, "UPDATE", old)
    assert "ap-unbind-me (fail-open)" in predicted.get("PolicyEnforcementLost", ""), predicted
    k("label", "svc", "unbind-me", "-n", NS, f"{UW}-")
    after = _settled(k, names, {"ap-unbind-me": ("False", "AncestorNotBound")})
    assert after["ap-unbind-me"][:2] == ("False", "AncestorNotBound"), after
    deadline = time.monotonic() + 30
    while "PolicyTargetNotBound" not in (now := _codes(wh, POLICIES[-3])) and time.monotonic() < deadline:
        time.sleep(0.5)  # the webhook's watch sees the relabel too
    assert POLICIES[-3]["metadata"]["name"] == "ap-unbind-me" and "PolicyTargetNotBound" in now, now
