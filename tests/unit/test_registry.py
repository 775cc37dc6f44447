"""The rule registry (webhook.core.dispatch): every code is emitted by a declared rule, every rule
cites rule IDs the docs define, and no rule can fire on a key the CEL matchConditions do not
forward. (tests/unit/conftest.py checks, in every unit test, that rules emit only what they declare.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core import forwarding, model
from webhook.core.dispatch import CONSUMER_RULES, all_rules, emitted_codes
from webhook.core.findings import Code
from webhook.core.index import Index, IndexView
from webhook.core.kinds import BY_KIND, CONSUMER_KINDS, KINDS, Role
from webhook.core.model import parse_consumer
from webhook.core.rules.context import Context

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "rules.md").read_text()


def test_every_code_is_emitted_by_a_declared_rule() -> None:
    assert emitted_codes() == set(Code)


def test_rule_names_are_unique_and_cite_ids_the_docs_define() -> None:
    names = [r.name for r in all_rules()]
    assert len(names) == len(set(names)), names
    defined = set(re.findall(r"\*\*([LRPWVGZ][0-9]+)\*\*", DOC)) | set(re.findall(r"^### (B[0-9])\.", DOC, re.M))
    for r in all_rules():
        cited = set()
        for token in re.split(r",\s*", r.ids):
            m = re.fullmatch(r"([LRPWBVGZ])([0-9]+)(?:-\1?([0-9]+))?", token)
            assert m, f"{r.name}: {token!r} is not a rule ID"
            first, last = int(m.group(2)), int(m.group(3) or m.group(2))
            cited |= {f"{m.group(1)}{i}" for i in range(first, last + 1)}
        assert cited <= defined, f"{r.name} cites {sorted(cited - defined)}"
        assert r.check.__doc__ or len(r.codes) == 1, f"{r.name}: a rule with several codes says why in a docstring"


def test_rules_apply_only_to_handled_kinds() -> None:
    judged_as = {k.kind for k in KINDS if k.role is not Role.WORKLOAD} | {"Pod"}  # templates are judged as Pods
    for r in all_rules():
        assert r.kinds and r.kinds <= judged_as, (r.name, r.kinds)


def test_the_webhook_configuration_holds_the_generated_conditions() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "webhooks.yaml").read_text()) if d]
    exprs = {c["name"]: c["expression"] for d in docs for wh in d["webhooks"] for c in wh.get("matchConditions", [])}
    assert exprs["carries-waypoint-labels"] == forwarding.consumer_condition()
    assert exprs["template-carries-waypoint-labels"] == forwarding.template_condition()


# --- No rule fires on a key the API server would not send ---------------------------------------

KEYS = sorted(
    {
        v
        for name, v in vars(model).items()
        if name.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z0-9.-]+/[a-zA-Z0-9.-]+|istio-injection", v)
    }
)
VALUES = ("", "x", "wp", "None", "none", "ambient", "ambiant", "true", "maybe", "150", "-1", "a/b")


def _contexts() -> list[Context]:
    class Unsynced(IndexView):
        def synced(self) -> bool:
            return False

    return [Context(IndexView(Index())), Context(Unsynced(Index()))]


def _objects(kind: str, key: str, value: str) -> list[dict[str, Any]]:
    """Objects of ``kind`` carrying ``key`` alone, wherever a rule might read it."""
    spec = BY_KIND[kind]
    meta: dict[str, Any] = {"name": "obj", **({} if spec.cluster_scoped else {"namespace": "ns"})}
    out = [
        {"apiVersion": spec.api_version(), "kind": kind, "metadata": {**meta, "labels": {key: value}}},
        {"apiVersion": spec.api_version(), "kind": kind, "metadata": {**meta, "annotations": {key: value}}},
    ]
    if kind == "WorkloadEntry":
        out.append({"apiVersion": spec.api_version(), "kind": kind, "metadata": meta, "spec": {"labels": {key: value}}})
    if kind == "ServiceEntry":
        out.append(
            {
                "apiVersion": spec.api_version(),
                "kind": kind,
                "metadata": meta,
                "spec": {"endpoints": [{"address": "1.1.1.1", "labels": {key: value}}]},
            }
        )
    return out


@pytest.mark.parametrize("kind", sorted(CONSUMER_KINDS))
def test_no_consumer_rule_fires_on_a_key_the_conditions_do_not_forward(kind: str) -> None:
    assert len(KEYS) > 10, KEYS  # the model's label and annotation keys were found
    for key in KEYS:
        for value in VALUES:
            for obj in _objects(kind, key, value):
                c = parse_consumer(kind, obj)
                for ctx in _contexts():
                    fired = [r.name for r in CONSUMER_RULES if kind in r.kinds and r.check(c, ctx.fresh())]
                    assert not fired or forwarding.consumer_forwarded(obj), (
                        f"{fired} fire on {kind} with only {key}={value!r} ({list(obj)}), which the CEL "
                        "conditions do not send: add the key to webhook/forwarding.py"
                    )


@pytest.mark.parametrize("kind", sorted(k.kind for k in KINDS if k.role is Role.WORKLOAD))
def test_no_rule_fires_on_a_template_key_the_conditions_do_not_forward(kind: str) -> None:
    spec = BY_KIND[kind]
    for key in KEYS:
        for value in VALUES:
            for where in ("labels", "annotations"):
                template: dict[str, Any] = {"metadata": {where: {key: value}}, "spec": {"containers": []}}
                body: dict[str, Any] = {"template": template}
                for step in reversed(spec.template_path[1:-1]):
                    body = {step: body}
                obj = {
                    "apiVersion": spec.api_version(),
                    "kind": kind,
                    "metadata": {"name": "w", "namespace": "ns"},
                    "spec": body,
                }
                c = parse_consumer(kind, obj)
                for ctx in _contexts():
                    fired = [r.name for r in CONSUMER_RULES if "Pod" in r.kinds and r.check(c, ctx.fresh())]
                    assert not fired or forwarding.template_forwarded(obj), (kind, key, value, where, fired)
