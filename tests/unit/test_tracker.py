"""The continuous audit's core: trimmed objects judge like whole ones, and one change recomputes
what it can affect (its consumers), not the cluster (issue 11, item 2)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from testkit.builders import consumer, gateway, gateway_class, ns_labels
from testkit.crds import report_schema
from webhook.audit import reports
from webhook.audit.tracker import Audited, Tracker, trim
from webhook.core.engine import Settings
from webhook.core.forwarding import consumer_forwarded
from webhook.core.index import Index, IndexView
from webhook.core.request import stored_request
from webhook.core.stored import audit_engine, judge_stored

UW, UWNS = "istio.io/use-waypoint", "istio.io/use-waypoint-namespace"
AMBIENT = {"istio.io/dataplane-mode": "ambient"}


class Cluster:
    """An index and a tracker fed the way the live view feeds them: apply, then observe."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.index = Index()
        self.tracker = Tracker(self.index, Settings())
        for o in objs:
            self.put(o)
        self.tracker.mark_all()
        self.tracker.recompute()

    def put(self, obj: dict[str, Any], deleted: bool = False) -> None:
        obj = copy.deepcopy(obj)
        self.index.apply(obj, deleted=deleted)
        self.tracker.observe(obj, deleted)

    def audited(self, kind: str, ns: str, name: str) -> Audited:
        a = self.tracker.get((kind, ns, name))
        assert a is not None, (kind, ns, name)
        return a

    def codes(self, kind: str, ns: str, name: str) -> list[str]:
        a = self.tracker.get((kind, ns, name))
        return sorted(r.code for r in a.results) if a else []


def with_uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["uid"] = uid
    return obj


WP = gateway("wp", "shop", labels={"istio.io/waypoint-for": "all"}, routes={"from": "All"})


def shop() -> Cluster:
    """Waypoint shop/wp with two consumers, a namespace that names it from afar, and bystanders."""
    return Cluster(
        ns_labels("shop", AMBIENT),
        ns_labels("far", {**AMBIENT, UW: "wp", UWNS: "shop"}),
        ns_labels("other", AMBIENT),
        WP,
        gateway("elsewhere", "other"),
        with_uid(consumer("Service", "reviews", "shop", {UW: "wp"}), "u-reviews"),
        consumer("Pod", "ratings", "shop", {UW: "wp"}),
        consumer("Pod", "ambient-pod", "far", {"istio.io/dataplane-mode": "ambient"}),
        consumer("Service", "bystander", "other", {UW: "elsewhere"}),
    )


def test_deleting_a_waypoint_recomputes_its_consumers_only_and_fixing_it_clears_them() -> None:
    c = shop()
    assert c.codes("Service", "shop", "reviews") == [] and c.tracker.counts == {}
    c.put(WP, deleted=True)
    # the waypoint, its two consumers, the Namespace naming it, and that namespace's audited Pod
    assert c.tracker.pending() == 5
    changed = set(c.tracker.recompute())
    # the Pod in namespace far has a waypoint key (dataplane-mode) and inherits far's reference (R2)
    assert changed == {
        ("Service", "shop", "reviews"),
        ("Pod", "shop", "ratings"),
        ("Namespace", "", "far"),
        ("Pod", "far", "ambient-pod"),
    }
    assert c.codes("Service", "shop", "reviews") == ["WaypointNotFound"]
    assert c.tracker.counts[("WaypointNotFound", "warn", "Service", "shop")] == 1
    assert c.codes("Service", "other", "bystander") == []
    c.put(WP)
    assert set(c.tracker.recompute()) == changed
    assert c.tracker.counts == {} and c.tracker.with_findings() == {}


def test_narrowing_allowed_routes_breaks_the_far_namespace() -> None:
    """P: a cross-namespace reference is recomputed when the waypoint's allowedRoutes change."""
    c = shop()
    c.put(gateway("wp", "shop", labels={"istio.io/waypoint-for": "all"}, routes={"from": "Same"}))
    changed = c.tracker.recompute()
    assert ("Namespace", "", "far") in changed
    assert c.codes("Namespace", "", "far") == ["AttachmentDenied"]


def test_class_relabel_recomputes_the_consumers_of_its_gateways() -> None:
    """R3: waypoint-for on the class decides what a Gateway without its own label serves."""
    cls = gateway_class("istio-waypoint", {"istio.io/waypoint-for": "workload"})
    c = Cluster(ns_labels("shop", AMBIENT), cls, gateway("wp", "shop"), consumer("Pod", "p", "shop", {UW: "wp"}))
    assert c.codes("Pod", "shop", "p") == []
    c.put(gateway_class("istio-waypoint", {"istio.io/waypoint-for": "service"}))
    assert ("Pod", "shop", "p") in c.tracker.recompute()
    assert c.codes("Pod", "shop", "p") == ["UnsupportedTrafficType"]


def test_namespace_relabel_recomputes_its_objects() -> None:
    c = Cluster(
        ns_labels("shop", AMBIENT),
        gateway("wp", "shop", labels={"istio.io/waypoint-for": "workload"}),
        consumer("Pod", "p", "shop", {UW: "wp"}),
        ns_labels("quiet", AMBIENT),
        consumer("Pod", "q", "quiet", {UW: "x"}),
    )
    before = c.codes("Pod", "quiet", "q")
    c.put(ns_labels("shop", {}))  # no longer ambient: the Pod's waypoint has no effect (L5)
    assert c.tracker.pending() == 3  # the Namespace, its Gateway and its Pod, not namespace quiet
    assert c.tracker.recompute() == [("Pod", "shop", "p")]
    assert c.codes("Pod", "shop", "p") == ["NotCaptured"] and c.codes("Pod", "quiet", "q") == before


def test_objects_without_waypoint_keys_are_not_audited_and_removing_the_label_drops_findings() -> None:
    c = Cluster(
        ns_labels("shop", AMBIENT),
        consumer("Service", "plain", "shop"),
        consumer("Service", "typo", "shop", {UW: "None"}),
    )
    assert c.tracker.get(("Service", "shop", "plain")) is None
    assert c.codes("Service", "shop", "typo") == ["InvalidUseWaypoint"]
    c.put(consumer("Service", "typo", "shop"))
    assert c.tracker.recompute() == [("Service", "shop", "typo")]
    assert c.tracker.counts == {} and c.tracker.get(("Service", "shop", "typo")) is None


def test_a_recreated_object_is_a_change_even_with_the_same_findings() -> None:
    """Its report is named after its uid: a new uid needs a new report."""
    svc = consumer("Service", "typo", "shop", {UW: "None"})
    c = Cluster(ns_labels("shop", AMBIENT), with_uid(svc, "one"))
    c.put(with_uid(svc, "one"), deleted=True)
    c.put(with_uid(svc, "two"))
    assert c.tracker.recompute() == [("Service", "shop", "typo")]
    assert c.tracker.counts[("InvalidUseWaypoint", "deny", "Service", "shop")] == 1
    assert c.audited("Service", "shop", "typo").uid == "two"


def test_deleted_object_drops_its_findings_once() -> None:
    svc = consumer("Service", "typo", "shop", {UW: "None"})
    c = Cluster(ns_labels("shop", AMBIENT), svc)
    c.put(svc, deleted=True)
    assert c.tracker.recompute() == [("Service", "shop", "typo")]
    assert c.tracker.counts == {}
    c.tracker.mark_all()
    assert c.tracker.recompute() == []


HEAVY = {"kubectl.kubernetes.io/last-applied-configuration": "x" * 10_000, "example.com/other": "y"}


@pytest.mark.parametrize(
    "obj",
    [
        consumer("Service", "s", "shop", {UW: "None"}, annotations=HEAVY, spec={"type": "ClusterIP", "ports": []}),
        consumer(
            "Service",
            "s",
            "shop",
            {UW: "wp", "istio.io/use-waypoint-canary": "wp2"},
            annotations={"istio.io/use-waypoint-canary-weight": "150", **HEAVY},
        ),
        consumer("Pod", "p", "shop", {UW: "wp"}, annotations={"sidecar.istio.io/status": "{}", **HEAVY}),
        consumer("Pod", "p", "shop", {UW: "wp"}, spec={"hostNetwork": True, "containers": [{"name": "c"}]}),
        consumer("Pod", "p", "shop", {UW: "None"}, owner=True),
        consumer("Pod", "p", "shop", {"istio.io/dataplane-mode": "ambiant"}),
        consumer("Pod", "p", "shop", annotations={UW: "wp"}),
        consumer("WorkloadEntry", "we", "shop", spec={"labels": {UW: "gone"}, "address": "1.2.3.4"}),
        consumer(
            "ServiceEntry",
            "se",
            "shop",
            spec={
                "hosts": ["a"],
                "endpoints": [{"address": "1.1.1.1"}, {"address": "1.1.1.2", "labels": {UW: "None"}}],
            },
        ),
        gateway("wp", "shop", listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}]),
        gateway_class("istio-waypoint", {"istio.io/waypoint-for": "bogus"}),
        ns_labels("shop", {UW: "gone", "istio-injection": "enabled"}),
    ],
    ids=lambda o: f"{o['kind']}",
)
def test_trimmed_objects_judge_like_whole_ones(obj: dict[str, Any]) -> None:
    index = Index()
    for o in (ns_labels("shop", AMBIENT), gateway("wp", "shop"), gateway("wp2", "shop")):
        index.apply(copy.deepcopy(o))
    engine = audit_engine(IndexView(index), Settings())
    whole, trimmed = stored_request(obj), stored_request(trim(obj))
    assert whole is not None and trimmed is not None
    expected = judge_stored(engine, whole)
    assert expected, "each case must have findings, or it proves nothing"
    assert judge_stored(engine, trimmed) == expected
    assert "kubectl.kubernetes.io/last-applied-configuration" not in str(trim(obj))


def test_trimming_keeps_the_service_type() -> None:
    """R0: an ExternalName Service has no findings at all; without its type it would."""
    index = Index()
    engine = audit_engine(IndexView(index), Settings())
    external = consumer("Service", "s", "shop", {UW: "None"}, spec={"type": "ExternalName", "ports": [{"port": 1}]})
    plain = consumer("Service", "s", "shop", {UW: "None"}, spec={"ports": [{"port": 1}]})
    requests = [stored_request(trim(o)) for o in (external, plain)]
    assert requests[0] is not None and requests[1] is not None
    assert judge_stored(engine, requests[0]) == () and judge_stored(engine, requests[1])


@pytest.mark.parametrize(
    ("obj", "audited"),
    [
        (consumer("Service", "s", labels={"app": "x"}), False),
        (consumer("Service", "s", labels={UW: "wp"}), True),
        (consumer("Service", "s", labels={"istio.io/use-waypoint-namespace": "x"}), True),
        (consumer("Service", "s", labels={"istio.io/use-waypoint-canary": "x"}), True),
        (consumer("Pod", "p", labels={"istio.io/dataplane-mode": "ambient"}), True),
        (consumer("Pod", "p", labels={"istio.io/ingress-use-waypoint": "true"}), True),
        (consumer("Pod", "p", annotations={UW: "wp"}), True),
        (consumer("Pod", "p", annotations={"istio.io/dataplane-mode": "ambient"}), False),
        (consumer("WorkloadEntry", "w", spec={"labels": {UW: "wp"}}), True),
        (consumer("ServiceEntry", "e", spec={"endpoints": [{"address": "a"}, {"labels": {UW: "wp"}}]}), True),
        (consumer("ServiceEntry", "e", spec={"endpoints": [{"labels": {"app": "x"}}]}), False),
    ],
)
def test_audited_consumers_are_the_ones_the_cel_conditions_send(obj: dict[str, Any], audited: bool) -> None:
    """The same keys as manifests/webhooks.yaml's carries-waypoint-labels condition."""
    assert consumer_forwarded(obj) is audited


def test_reports_follow_the_kyverno_crd_schema_and_keep_timestamps() -> None:
    c = Cluster(
        ns_labels("shop", {**AMBIENT, UW: "gone"}),
        with_uid(consumer("Service", "s", "shop", {UW: "None", "istio.io/use-waypoint-namespace": "x y"}), "u-s"),
    )
    for key, kind in ((("Service", "shop", "s"), "PolicyReport"), (("Namespace", "", "shop"), "ClusterPolicyReport")):
        a = c.tracker.get(key)
        assert a is not None and a.results
        report = reports.render(a.api_version, key[0], key[1], key[2], a.uid, a.results, {}, 1000)
        jsonschema.validate(report, report_schema(kind))
        assert report["kind"] == kind and report["scope"]["name"] == key[2]
        assert report["summary"]["fail"] + report["summary"]["warn"] == len(a.results)
        later = reports.render(a.api_version, key[0], key[1], key[2], a.uid, a.results, reports.since_of(report), 2000)
        assert reports.content(later) == reports.content(report)  # unchanged: never rewritten
        # The same content as an OpenReports Report / ClusterReport, valid for its CRD.
        opened = reports.render(a.api_version, *key, a.uid, a.results, {}, 1000, reports.OPENREPORTS)
        open_kind = "Report" if key[1] else "ClusterReport"
        jsonschema.validate(opened, report_schema(open_kind))
        assert (opened["apiVersion"], opened["kind"], opened["source"]) == (
            "openreports.io/v1alpha1",
            open_kind,
            "waypoint-webhook",
        )
        assert (opened["results"], opened["summary"], opened["scope"]) == (
            report["results"],
            report["summary"],
            report["scope"],
        )
    svc = reports.render("v1", "Service", "shop", "s", "u-s", c.audited("Service", "shop", "s").results, {}, 1)
    assert svc["metadata"]["name"] == "waypoint-webhook-u-s"
    assert [r["result"] for r in svc["results"]] == ["fail", "fail"]  # denials: result fail, severity high
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u-s"


def test_a_services_change_recomputes_the_policies_that_target_it() -> None:
    """A7 Z7: binding a Service clears PolicyTargetNotBound on the policy targeting it, and deleting
    its waypoint brings it back; the Service itself, without a waypoint label, is never audited."""
    from testkit.builders import namespace, policy, target

    deny = policy(name="deny", ns="shop", targetRefs=[target("Service", "api")], action="DENY", rules=[{}])
    c = Cluster(namespace("shop", **AMBIENT), gateway("wp", "shop"), consumer("Service", "api", "shop"), deny)
    assert c.codes("AuthorizationPolicy", "shop", "deny") == ["PolicyTargetNotBound"]
    c.put(consumer("Service", "api", "shop", {UW: "wp"}))
    assert ("AuthorizationPolicy", "shop", "deny") in c.tracker.recompute()
    assert c.codes("AuthorizationPolicy", "shop", "deny") == []
    c.put(gateway("wp", "shop"), deleted=True)
    c.tracker.recompute()
    assert c.codes("AuthorizationPolicy", "shop", "deny") == ["PolicyTargetNotBound"]
