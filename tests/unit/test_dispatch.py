"""The one rule dispatcher (webhook.core.dispatch): every judgement gets a context of its own, so a
rule's memo is never seen by another request (or by the other version of an UPDATE), each version
of an object is parsed once per request, and every role has exactly one judge."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from testkit.builders import MESH, consumer, gateway, request
from webhook.core.dispatch import REGISTRY, Judge, Registry
from webhook.core.engine import Engine
from webhook.core.findings import Code, Finding
from webhook.core.index import Index, IndexView
from webhook.core.kinds import KINDS, Role
from webhook.core.model import Gateway, parse_gateway
from webhook.core.rules.context import Context
from webhook.core.rules.rule import RuleTable, rule


class Spy:
    """A Gateway rule that memoises, as a rule that caches a resolution would, and records what it
    found in the memo when it started."""

    def __init__(self) -> None:
        self.seen: list[dict[Any, Any]] = []
        self.parsed = 0
        self.lock = threading.Lock()

    def check(self, gw: Gateway, ctx: Context) -> list[Finding]:
        with self.lock:
            self.seen.append(dict(ctx.memo))
        ctx.memo["answer"] = gw.meta.name  # left behind for whoever shares this context
        return []

    def parse(self, kind: str, raw: Mapping[str, Any], namespace: str) -> Gateway:
        with self.lock:
            self.parsed += 1
        return parse_gateway(raw, namespace)

    def engine(self) -> Engine:
        spy_rule = rule(self.check, [Code.UnexpectedListener], ["Gateway"], "W3")
        judge: Judge[Gateway] = Judge(self.parse, lambda gw, ctx: True, RuleTable(spy_rule), lambda _: "Gateway")
        registry = Registry({**REGISTRY.judges, Role.GATEWAY: judge}, REGISTRY.on_delete, REGISTRY.on_update)
        return Engine(IndexView(Index()), registry=registry)


def test_a_rules_memo_is_not_seen_by_another_request() -> None:
    spy = Spy()
    engine = spy.engine()
    engine.validate(request(gateway("a")))
    engine.validate(request(gateway("b")))
    assert spy.seen == [{}, {}]


def test_the_old_and_new_object_of_an_update_are_judged_apart_and_parsed_once_each() -> None:
    spy = Spy()
    engine = spy.engine()
    old = gateway("a")
    new = gateway("a", listeners=[MESH, {"name": "http", "port": 80, "protocol": "HTTP"}])
    engine.validate(request(new, "UPDATE", old))
    assert spy.seen == [{}, {}], "the new and the old version each start from an empty memo"
    assert spy.parsed == 2, "one parse of the new object and one of the old, shared by every rule and impact table"


def test_concurrent_requests_never_share_a_memo() -> None:
    spy = Spy()
    engine = spy.engine()
    threads = [threading.Thread(target=engine.validate, args=(request(gateway(f"g{i}")),)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spy.seen == [{}] * 16


def test_every_role_has_one_judge_and_every_kind_a_role() -> None:
    assert set(REGISTRY.judges) == set(Role)
    assert {k.role for k in KINDS} <= set(REGISTRY.judges)


def test_a_consumer_memo_is_per_object() -> None:
    """The real consumer rules memoise an object's sites and references: two Services in a row
    must not see each other's."""
    engine = Engine(IndexView(Index()))
    first = engine.validate(request(consumer("Service", "s1", labels={"istio.io/use-waypoint": "None"})))
    second = engine.validate(request(consumer("Service", "s2", labels={"istio.io/use-waypoint": "wp"})))
    assert [j.code for j in first.judged] == [Code.InvalidUseWaypoint]
    assert Code.InvalidUseWaypoint not in [j.code for j in second.judged]
    assert any("s2" in j.message for j in second.judged) and not any("s1" in j.message for j in second.judged)
