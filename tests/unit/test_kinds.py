"""The table of kinds (webhook.core.kinds) against docs/rules.md B0 and against what is shipped: the
webhook rules, the ClusterRole, the live view's watches. A kind added to the table and forgotten
in a manifest (so the API server never sends it, or the view cannot list it) fails here, not in
production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from testkit.builders import B0
from testkit.builders import KINDS as BUILDER_KINDS
from webhook.admission.metrics import KINDS as METRIC_KINDS
from webhook.cluster.live import AUDIT_RESOURCES, RESOURCES
from webhook.core.index import Index
from webhook.core.kinds import BY_KIND, KINDS, WATCHED, Role
from webhook.core.routing import ROUTES

ROOT = Path(__file__).resolve().parents[2]


def manifest(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if d]


def rules_of(webhook: dict[str, Any]) -> set[tuple[str, str, str, str, str]]:
    return {
        (g, v, r, op, rule["scope"])
        for rule in webhook["rules"]
        for g in rule["apiGroups"]
        for v in rule["apiVersions"]
        for r in rule["resources"]
        for op in rule["operations"]
    }


def test_the_table_is_docs_b0() -> None:
    assert {(k.group, k.resource): (set(k.versions), set(k.operations)) for k in KINDS} == B0


def test_the_validating_entries_register_every_kind_and_operation_once_per_request() -> None:
    """Every (kind, operation) of the table goes to the entries of the routes; a controller's CREATE
    is split off by matchConditions, so a CREATE of Pods and workloads is in two entries."""
    (vwc,) = [d for d in manifest("webhooks.yaml") if d["kind"] == "ValidatingWebhookConfiguration"]
    by_name = {wh["name"]: wh for wh in vwc["webhooks"]}
    assert set(by_name) == {r.name for r in ROUTES}
    registered = set().union(*(rules_of(wh) for wh in by_name.values()))
    assert registered == {
        (k.group, v, k.resource, op, k.scope) for k in KINDS for v in k.versions for op in k.operations
    }
    for r in ROUTES:
        assert rules_of(by_name[r.name]) == {
            (k.group, v, k.resource, op, k.scope) for k in r.kinds for v in k.versions for op in r.operations
        }, r.name


def test_the_mutating_webhook_registers_the_gateways_for_create_and_update() -> None:
    (mwc,) = [d for d in manifest("webhooks.yaml") if d["kind"] == "MutatingWebhookConfiguration"]
    (wh,) = mwc["webhooks"]
    assert rules_of(wh) == {
        (k.group, v, k.resource, op, k.scope)
        for k in KINDS
        if k.role is Role.GATEWAY
        for v in k.versions
        for op in ("CREATE", "UPDATE")
    }


def test_the_view_clusterrole_reads_exactly_the_watched_kinds() -> None:
    (role,) = [
        d
        for d in manifest("rbac.yaml")
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "waypoint-webhook-view"
    ]
    granted = {
        (g, r)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        if {"get", "list", "watch"} <= set(rule["verbs"])
    }
    assert granted == {(k.group, k.resource) for k in WATCHED}


def test_everything_else_derives_from_the_table() -> None:
    assert [(r.kind, r.path, r.label_selector) for r in RESOURCES] == [
        (k.kind, k.collection, k.watch_selector) for k in WATCHED
    ]
    assert all(r.label_selector is None for r in AUDIT_RESOURCES)
    assert set(BY_KIND) == METRIC_KINDS and set(BUILDER_KINDS) == set(BY_KIND)
    index = Index()  # the index keeps exactly the watched kinds
    for k in KINDS:
        obj = {
            "apiVersion": k.api_version(),
            "kind": k.kind,
            "metadata": {"name": "x", **({} if k.cluster_scoped else {"namespace": "n"})},
        }
        if k.role is Role.GATEWAY:
            obj["spec"] = {"gatewayClassName": "c", "listeners": []}
        assert index.apply(obj) is (k.watch_version is not None), k.kind
