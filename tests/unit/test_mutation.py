"""Defaults M1/M2 (docs/rules.md B2): minimal, escaped, idempotent patches that yield schema-valid Gateways."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonschema
import pytest

from testkit.builders import MESH, engine, gateway, gateway_class, request, state
from testkit.crds import schema
from webhook.core.index import Index

UW = "istio.io/use-waypoint"


def minimal(name: str = "waypoint", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {"gatewayClassName": "istio-waypoint", **spec},
    }


def mutate(
    obj: dict[str, Any], idx: Index | None = None, operation: str = "CREATE", pin: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``pin``: M2 on (configuration pinWaypointFor); the tests of M2 itself want it."""
    ops = (
        engine(idx or state(), pin=pin)
        .mutate(request(obj, operation, old=obj if operation == "UPDATE" else None))
        .patch
    )
    return ops, jsonpatch.apply_patch(obj, ops) if ops else obj


def test_m1_m2_minimal_gateway_becomes_the_canonical_waypoint() -> None:
    """W4: only gatewayClassName in, the canonical waypoint out, valid against the v1.3.0 CRD."""
    _ops, out = mutate(minimal())
    assert out["spec"]["listeners"] == [MESH]
    assert out["metadata"]["labels"] == {"istio.io/waypoint-for": "service"}
    jsonschema.validate(out, schema("Gateway"))
    assert mutate(out)[0] == []  # idempotent: reinvocationPolicy IfNeeded is safe


def test_m2_is_off_by_default_so_the_class_can_still_decide() -> None:
    """M2 off: istiod resolves a missing waypoint-for from the GatewayClass at run time, and
    `istioctl waypoint generate` leaves it out on purpose. M1 still makes the Gateway valid."""
    ops, out = mutate(minimal(), pin=False)
    assert ops == [{"op": "add", "path": "/spec/listeners", "value": [MESH]}]
    assert "labels" not in out["metadata"]
    jsonschema.validate(out, schema("Gateway"))
    idx = state(gateway_class("istio-waypoint", {"istio.io/waypoint-for": "workload"}))
    assert mutate(minimal(listeners=[MESH]), idx, pin=False)[0] == []


def test_before_mutation_the_minimal_gateway_fails_the_schema() -> None:
    """Why M1 exists: the CRD requires listeners (mutation runs before schema validation)."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(minimal(), schema("Gateway"))


def test_m1_empty_listener_list_is_replaced() -> None:
    ops, out = mutate(minimal(listeners=[], labels={"istio.io/waypoint-for": "all"}))
    assert ops == [{"op": "replace", "path": "/spec/listeners", "value": [MESH]}]
    jsonschema.validate(out, schema("Gateway"))


def test_m2_escapes_the_label_key_when_labels_exist() -> None:
    ops, out = mutate(minimal(labels={"app": "x"}, listeners=[MESH]))
    assert ops == [{"op": "add", "path": "/metadata/labels/istio.io~1waypoint-for", "value": "service"}]
    assert out["metadata"]["labels"] == {"app": "x", "istio.io/waypoint-for": "service"}


def test_m2_uses_the_gateway_class_label() -> None:
    idx = state(gateway_class("istio-waypoint", {"istio.io/waypoint-for": "workload"}))
    _, out = mutate(minimal(listeners=[MESH]), idx)
    assert out["metadata"]["labels"]["istio.io/waypoint-for"] == "workload"


def test_m2_does_not_copy_an_invalid_class_label() -> None:
    idx = state(gateway_class("istio-waypoint", {"istio.io/waypoint-for": "bogus"}))
    assert mutate(minimal(listeners=[MESH]), idx)[0] == []


def test_m2_skipped_while_unsynced() -> None:
    ops = engine(state(), synced=False, pin=True).mutate(request(minimal(listeners=[MESH]))).patch
    assert ops == []


def test_existing_label_and_listeners_are_untouched() -> None:
    obj = gateway(
        "waypoint",
        labels={"istio.io/waypoint-for": "none"},
        listeners=[{"name": "x", "port": 15008, "protocol": "hbone"}],
    )
    assert mutate(obj)[0] == []


def test_non_waypoint_gateways_and_consumers_are_never_patched() -> None:
    ingress = minimal()
    ingress["spec"]["gatewayClassName"] = "istio"
    assert mutate(ingress)[0] == []
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "default", "labels": {UW: "x"}},
    }
    assert engine(state()).mutate(request(svc)).patch == []


def test_generate_name_gateway_is_defaulted() -> None:
    obj = minimal()
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "wp-"
    ops, out = mutate(obj)
    assert len(ops) == 2 and out["spec"]["listeners"] == [MESH]


def test_update_is_defaulted_too() -> None:
    ops, _ = mutate(minimal(), operation="UPDATE")
    assert {op["path"] for op in ops} == {"/spec/listeners", "/metadata/labels"}


def test_builtin_patch_applier_matches_jsonpatch() -> None:
    """The offline checker applies patches itself (no jsonpatch at run time); it must agree."""
    from webhook.core.rules.defaults import apply_patch

    for obj in (minimal(), minimal(labels={"a": "b"}), minimal(listeners=[])):
        ops, expected = mutate(obj)
        assert apply_patch(obj, ops) == expected
