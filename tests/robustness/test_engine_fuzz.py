"""Malformed input is never a 500: for any handled kind, a wrong type anywhere gives a verdict or
a :class:`Malformed` naming the field (a 400 deny); every patch applies to the object it was
computed for; and a malformed object in the cluster state is refused at the door, so it can
never break the review of another object."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import jsonpatch
from hypothesis import given
from hypothesis import strategies as st

from testkit.builders import KINDS, consumer, engine, request, state
from tests.robustness.strategies import SEEDS, UW, UWN, YAML, mutated, paths
from webhook.core.index import Index
from webhook.core.model import Malformed
from webhook.core.request import AdmissionRequest, GroupVersionKind

WORLD = [s for s in SEEDS if s["kind"] in ("Gateway", "GatewayClass", "Namespace")]


def _request(kind: str, operation: str, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> AdmissionRequest:
    """As the API server sends it: kind, namespace and name come from the request, whatever the
    object holds."""
    group, version = KINDS[kind]
    ns = "" if kind in ("Namespace", "GatewayClass") else "default"
    return AdmissionRequest("fuzz", GroupVersionKind(group, version, kind), operation, ns, "x", "", obj, old)


def _judge(obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None) -> None:
    eng = engine(state(*WORLD))
    req = _request(obj["kind"], operation, obj, old)
    try:
        eng.validate(req)
    except Malformed as e:
        assert e.field and isinstance(e.field, str)
    try:
        ops = eng.mutate(req).patch
    except Malformed:
        return
    if ops:
        jsonpatch.apply_patch(copy.deepcopy(obj), ops)  # raises if a path does not exist


@given(mutated())
def test_create_of_any_malformed_object(obj: dict[str, Any]) -> None:
    _judge(obj)


@given(mutated(), st.sampled_from(SEEDS))
def test_update_with_malformed_old_or_new(obj: dict[str, Any], other: dict[str, Any]) -> None:
    old = copy.deepcopy(other) if other["kind"] == obj["kind"] else copy.deepcopy(obj)
    _judge(obj, "UPDATE", old)
    _judge(old, "UPDATE", obj)


@given(mutated([s for s in SEEDS if s["kind"] == "Gateway"]))
def test_delete_of_a_malformed_gateway(old: dict[str, Any]) -> None:
    eng = engine(state(*WORLD))
    with contextlib.suppress(Malformed):
        eng.validate(_request("Gateway", "DELETE", None, old))


@given(mutated(values=YAML))
def test_malformed_state_object_is_refused_and_breaks_nothing(obj: dict[str, Any]) -> None:
    index = Index()
    for seed in WORLD:
        index.apply(seed)
    with contextlib.suppress(Malformed):  # the backends log it and skip the object
        index.apply(obj)
    eng = engine(index)
    for labels in ({UW: "waypoint"}, {UW: "shared", UWN: "infra"}, {UW: "ingress"}, {}):
        eng.validate(request(consumer("Service", "probe", labels=labels)))
        eng.validate(request(consumer("Pod", "probe", labels=labels)))


WRONG = [None, 5, -1, True, 1.5, "x", "", [], [None], {}, {"a": None}, [{"k": 1}]]


def _every_wrong_object() -> list[tuple[str, dict[str, Any]]]:
    """Each seed with one value replaced by each wrong-typed value, one key removed, or an
    integer key added to one of its maps: every place, every shape."""
    out = []
    for seed in SEEDS:
        for path in paths(seed):
            if path[:1] in (("apiVersion",), ("kind",)):
                continue
            for value in [*WRONG, DELETE]:
                obj = copy.deepcopy(seed)
                parent: Any = obj
                for step in path[:-1]:
                    parent = parent[step]
                if value is DELETE:
                    if isinstance(parent, dict):
                        del parent[path[-1]]
                else:
                    parent[path[-1]] = copy.deepcopy(value)
                out.append((f"{seed['kind']}:{'.'.join(map(str, path))}={value!r}", obj))
            obj = copy.deepcopy(seed)
            target: Any = obj
            for step in path:
                target = target[step]
            if isinstance(target, dict):
                target[5] = "int key"  # what YAML allows and JSON cannot say
                out.append((f"{seed['kind']}:{'.'.join(map(str, path))}+{{5: ...}}", obj))
    return out


DELETE = object()


def test_every_wrong_type_anywhere_is_a_verdict_or_a_400() -> None:
    cases = _every_wrong_object()
    assert len(cases) > 2000
    failures = []
    for name, obj in cases:
        try:
            _judge(obj)
            index = Index()
            for seed in WORLD:
                index.apply(seed)
            with contextlib.suppress(Malformed):
                index.apply(obj)
            eng = engine(index)
            for labels in ({UW: "waypoint"}, {UW: "shared", UWN: "infra"}, {UW: "ingress"}, {}):
                eng.validate(request(consumer("Service", "probe", labels=labels)))
        except Exception as e:  # collected, so one run shows every hole
            failures.append(f"{name}: {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:40])
