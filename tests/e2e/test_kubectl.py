"""End-to-end: real kube-apiserver + etcd, the webhook with its live view, and the real kubectl.

Rule IDs from docs/rules.md are cited where a scenario exercises them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from testkit.controlplane import ControlPlane
from testkit.harness import Kubectl, eventually, make_ready, wait_until, webhook_configs
from testkit.webhook_process import SA, Webhook, start_webhook
from tests.e2e import seed
from tests.e2e.seed import service, waypoint

pytestmark = pytest.mark.e2e
UW = "istio.io/use-waypoint"


def test_seed_workflows_command_for_command(kubectl: Kubectl, webhook: Webhook) -> None:
    """Every workflow of the seed document, in its order, through the webhook (on Gateway API v1.6)."""
    seed.run(kubectl)


def test_denial_shows_code_and_fix_via_apply_and_dry_run(kubectl: Kubectl, ns: str) -> None:
    bad = service("ratings", ns, {UW: "None"})
    for extra in ((), ("--dry-run=server",)):
        p = kubectl.apply(bad, *extra, check=False)
        assert p.returncode != 0
        assert 'admission webhook "consumers.validate.waypoint-webhook.io" denied the request' in p.stderr
        assert "InvalidUseWaypoint:" in p.stderr and "write 'none' (lowercase) to opt out" in p.stderr
    assert kubectl("get", "service", "ratings", "-n", ns, check=False).returncode != 0


def test_dry_run_leaves_nothing_behind(kubectl: Kubectl, ns: str) -> None:
    p = kubectl.apply(waypoint("dry", ns), "--dry-run=server")
    assert "(server dry run)" in p.stdout
    assert "NotFound" in kubectl("get", "gateway", "dry", "-n", ns, check=False).stderr


def test_warning_is_printed_by_kubectl(kubectl: Kubectl, ns: str) -> None:
    p = kubectl.apply(service("details", ns, {UW: "not-there-yet"}))
    assert "service/details created" in p.stdout
    assert f"Warning: WaypointNotFound: Service {ns}/details: waypoint Gateway {ns}/not-there-yet not found" in p.stderr


def test_minimal_gateway_is_stored_with_the_mesh_listener(kubectl: Kubectl, ns: str) -> None:
    """M1: the CRD requires listeners, so only the mutation makes this Gateway admissible; M2 is
    off by default, so no waypoint-for label is pinned."""
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "minimal", "namespace": ns},
            "spec": {"gatewayClassName": "istio-waypoint"},
        }
    )
    gw = json.loads(kubectl("get", "gateway", "minimal", "-n", ns, "-o", "json").stdout)
    assert gw["spec"]["listeners"] == [
        {"name": "mesh", "port": 15008, "protocol": "HBONE", "allowedRoutes": {"namespaces": {"from": "Same"}}}
    ]
    assert "istio.io/waypoint-for" not in (gw["metadata"].get("labels") or {})


def test_a_waypoint_with_every_gateway_api_v1_6_field_is_admitted(kubectl: Kubectl, ns: str) -> None:
    """G1: the v1.4-v1.6 fields the CRDs accept are admitted; allowedListeners (ListenerSets can never
    serve a waypoint) is warned about, not denied."""
    p = kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "modern", "namespace": ns},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "addresses": [{"type": "IPAddress", "value": "10.0.0.77"}],
                "allowedListeners": {"namespaces": {"from": "Same"}},
                "tls": {"backend": {"clientCertificateRef": {"name": "waypoint-client"}}},
                "infrastructure": {"annotations": {f"example.com/a{i}": "x" for i in range(16)}},
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }
    )
    assert "gateway.gateway.networking.k8s.io/modern created" in p.stdout
    assert "Warning: ListenerSetOnWaypoint:" in p.stderr and "Error" not in p.stderr


def test_invalid_gateways_are_denied(kubectl: Kubectl, ns: str) -> None:
    p = kubectl.apply(waypoint("typo", ns, "Service"), check=False)
    assert p.returncode != 0 and "InvalidWaypointFor:" in p.stderr
    lower = waypoint("lower", ns).replace("protocol: HBONE", "protocol: hbone")
    p = kubectl.apply(lower, check=False)
    assert "MissingMeshListener:" in p.stderr and "protocol must be HBONE" in p.stderr


def test_deployment_with_bad_template_label_is_denied(kubectl: Kubectl, ns: str) -> None:
    def deploy(label: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "reviews-v3", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "reviews"}},
                "template": {
                    "metadata": {"labels": {"app": "reviews", UW: label}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }

    p = kubectl.apply(deploy("Reviews_Waypoint"), check=False)
    assert p.returncode != 0 and 'admission webhook "workloads.validate.waypoint-webhook.io" denied' in p.stderr
    assert "spec.template.metadata.labels[istio.io/use-waypoint]" in p.stderr or "InvalidUseWaypoint" in p.stderr
    kubectl.apply(waypoint("pods", ns, "workload"))
    make_ready(kubectl, "pods", ns)
    assert eventually(lambda: "Warning" not in kubectl.apply(deploy("pods")).stderr)


def test_view_follows_the_cluster(kubectl: Kubectl, ns: str) -> None:
    """Create a waypoint, label a Service a moment later: no WaypointNotFound. Delete it: WaypointInUse."""
    kubectl.apply(waypoint("late", ns))
    make_ready(kubectl, "late", ns)
    kubectl.apply(service("svc", ns))
    time.sleep(1.0)
    p = kubectl("label", "service", "svc", "-n", ns, f"{UW}=late")
    assert "labeled" in p.stdout and "WaypointNotFound" not in p.stderr, p.stderr
    p = eventually(lambda: (q := kubectl("delete", "gateway", "late", "-n", ns)) and q)
    assert "Warning: WaypointInUse: Gateway" in p.stderr and f"Service {ns}/svc" in p.stderr


def test_cross_namespace_attachment_denied_and_allowed(kubectl: Kubectl, ns: str) -> None:
    """P3/P4 through the live view: the consumer namespace's labels decide."""
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "shared", "namespace": ns, "labels": {"istio.io/waypoint-for": "all"}},
            "spec": {
                "gatewayClassName": "istio-waypoint",
                "listeners": [
                    {
                        "name": "mesh",
                        "port": 15008,
                        "protocol": "HBONE",
                        "allowedRoutes": {
                            "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}}
                        },
                    }
                ],
            },
        }
    )
    make_ready(kubectl, "shared", ns)
    other = f"{ns}-c"
    kubectl("create", "namespace", other)
    labels = {UW: "shared", "istio.io/use-waypoint-namespace": ns}
    p = wait_until(
        lambda: (q := kubectl.apply(service("a", other, labels), check=False)) and "AttachmentDenied" in q.stderr and q,
        10,
        "the view to see the waypoint",
    )
    assert p.returncode != 0 and "AttachmentDenied:" in p.stderr
    kubectl("label", "namespace", other, "team=blue")
    assert eventually(lambda: kubectl.apply(service("a", other, labels), check=False).returncode == 0)


def test_service_account_rbac_is_least_privilege(kubectl: Kubectl, webhook: Webhook) -> None:
    def can(verb: str, resource: str) -> bool:
        p = kubectl("auth", "can-i", f"--as={SA}", verb, resource, "--all-namespaces", check=False)
        return p.stdout.strip() == "yes"

    for resource in (
        "gateways.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
        "namespaces",
        "services",
        "pods",
        "serviceentries.networking.istio.io",
        "workloadentries.networking.istio.io",
    ):
        assert can("list", resource) and can("watch", resource) and can("get", resource), resource
        assert not can("create", resource) and not can("delete", resource) and not can("patch", resource)
    for verb, resource in (
        ("get", "secrets"),
        ("list", "configmaps"),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("create", "pods"),
        ("list", "deployments.apps"),
    ):
        assert not can(verb, resource), (verb, resource)


def test_view_resyncs_after_apiserver_restart(
    cluster: ControlPlane, kubectl: Kubectl, webhook: Webhook, ns: str
) -> None:
    cluster.stop_apiserver()
    time.sleep(2)
    cluster.start_apiserver()
    kubectl.apply(waypoint("after-restart", ns))
    make_ready(kubectl, "after-restart", ns)
    kubectl.apply(service("svc", ns))
    # Judged on fresh state: the waypoint created after the restart is known to the view.
    assert eventually(
        lambda: (
            "WaypointNotFound"
            not in kubectl("label", "service", "svc", "-n", ns, f"{UW}=after-restart", "--overwrite").stderr
        ),
        30,
    )
    assert webhook.proc.poll() is None
    relists = [
        line
        for line in webhook.metrics().splitlines()
        if line.startswith("waypoint_webhook_state_relists_total") and 'reason="reconnect"' in line
    ]
    assert relists and sum(float(line.rsplit(" ", 1)[1]) for line in relists) > 0


def test_a_class_with_istios_mesh_controller_is_a_waypoint_class(kubectl: Kubectl, ns: str) -> None:
    """W2 through the API server: a platform team's own GatewayClass with the mesh controller makes its
    minimal Gateway a waypoint (M1 adds the mesh listener), once the webhook's watch has seen the class;
    the API server sends every Gateway, whatever its class."""
    cls = f"platform-{ns}"
    kubectl.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": cls},
            "spec": {"controllerName": "istio.io/mesh-controller"},
        }
    )
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "wp", "namespace": ns},
        "spec": {"gatewayClassName": cls},
    }
    # Without a listener the CRD refuses it, unless the mutating webhook filled one in.
    assert eventually(lambda: kubectl.apply(gw, "--dry-run=server", check=False).returncode == 0)
    kubectl.apply(gw)
    stored = json.loads(kubectl("get", "gateway", "wp", "-n", ns, "-o", "json").stdout)
    assert [(x["port"], x["protocol"]) for x in stored["spec"]["listeners"]] == [(15008, "HBONE")]
    bad = {**gw, "metadata": {"name": "bad.name", "namespace": ns}}
    p = kubectl.apply(bad, check=False)
    assert p.returncode != 0 and "InvalidWaypointName" in p.stderr, p.stderr


def _deny_admin(name: str, ns: str, target: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"targetRefs": [target], "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]},
    }


def test_policies_that_need_a_waypoint_warn_and_an_impossible_target_is_denied(kubectl: Kubectl, ns: str) -> None:
    """A7 Z7: an L7 DENY on a Service no waypoint serves is admitted with the cause named (istiod
    would say AncestorNotBound, afterwards); Z1: a Service target of group networking.istio.io can
    never apply anywhere, and is the one policy denial. Z10: a route whose parent names a missing
    waypoint is silently unrouted (istiod says ResolvedWaypoints=True)."""
    kubectl.apply(service("reviews", ns))
    ap = _deny_admin("reviews-deny", ns, {"group": "", "kind": "Service", "name": "reviews"})
    eventually(lambda: "PolicyTargetNotFound" not in kubectl.apply(ap, "--dry-run=server").stderr)  # the view has it
    p = kubectl.apply(ap)
    assert "authorizationpolicy.security.istio.io/reviews-deny created" in p.stdout
    assert (
        f"Warning: PolicyTargetNotBound: AuthorizationPolicy {ns}/reviews-deny: Service {ns}/reviews is bound to no "
        f"waypoint (neither it nor namespace {ns} has istio.io/use-waypoint)" in p.stderr
    ), p.stderr
    bad = _deny_admin("wrong-group", ns, {"group": "networking.istio.io", "kind": "Service", "name": "reviews"})
    p = kubectl.apply(bad, check=False)
    assert p.returncode != 0
    assert 'admission webhook "policies.validate.waypoint-webhook.io" denied the request' in p.stderr
    assert "InvalidPolicyTarget:" in p.stderr and "a Service's group is ''" in p.stderr
    kubectl.apply(service("ratings", ns, {UW: "ghost"}), check=False)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "ratings", "namespace": ns},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "ratings", "port": 9080}]},
    }
    eventually(lambda: "RouteParentNotFound" not in kubectl.apply(route, "--dry-run=server").stderr)
    p = kubectl.apply(route)
    assert (
        f"Warning: RouteParentNotBound: HTTPRoute {ns}/ratings: parent Service {ns}/ratings is bound to no waypoint"
        in p.stderr
    ), p.stderr


def test_unbinding_a_service_warns_that_its_l7_deny_stops_and_strict_refuses(
    kubectl: Kubectl, ns: str, webhook: Webhook, cluster: ControlPlane, tmp_path: Path
) -> None:
    """The seed's promise (A7 Z14): "the waypoint applies all policies for that resource", so
    `kubectl label svc reviews istio.io/use-waypoint-` while an L7 DENY targets reviews takes the
    DENY out of enforcement; the webhook says so, naming it as fail-open. Under --preset strict the
    label removal is denied."""
    kubectl.apply(waypoint("waypoint", ns))
    make_ready(kubectl, "waypoint", ns)
    kubectl.apply(service("reviews", ns, {UW: "waypoint"}))
    kubectl.apply(_deny_admin("reviews-deny", ns, {"group": "", "kind": "Service", "name": "reviews"}))
    unlabel = ("label", "svc", "reviews", "-n", ns, f"{UW}-")
    dry = eventually(lambda: (q := kubectl(*unlabel, "--dry-run=server")) and "PolicyEnforcementLost" in q.stderr and q)
    assert dry, "the live view never learnt the policy"
    p = kubectl(*unlabel)
    assert "service/reviews unlabeled" in p.stdout
    assert (
        f"Warning: PolicyEnforcementLost: Service {ns}/reviews: this change stops 1 policy or route applying "
        f"(AuthorizationPolicy {ns}/reviews-deny (fail-open)); 1 fail open" in p.stderr
    ), p.stderr

    kubectl("label", "svc", "reviews", "-n", ns, f"{UW}=waypoint")
    strict = start_webhook(cluster, kubectl, tmp_path / "strict", ["--preset", "strict"])
    try:
        kubectl.apply(webhook_configs(kubectl, int(strict.url.rsplit(":", 1)[1]), strict.ca.read_bytes()))
        denied = eventually(lambda: (q := kubectl(*unlabel, check=False)) and q.returncode != 0 and q)
        assert denied and "PolicyEnforcementLost:" in denied.stderr and "fail-open" in denied.stderr, denied
    finally:
        kubectl.apply(webhook_configs(kubectl, int(webhook.url.rsplit(":", 1)[1]), webhook.ca.read_bytes()))
        strict.stop(15)
    assert UW in kubectl("get", "svc", "reviews", "-n", ns, "-o", "jsonpath={.metadata.labels}").stdout
