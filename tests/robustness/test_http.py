"""The HTTP contract under random and hostile input, against the real server (gunicorn over TLS):
every review gets a well-formed AdmissionReview carrying its uid, never a 500, and every patch
applies; logs cannot be forged; metric series and messages stay bounded."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from testkit.builders import KINDS, consumer, review_body
from testkit.harness import eventually
from tests.robustness.strategies import JSON, SEEDS, mutated
from tests.server.running import ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.server
OPERATIONS = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "", "create", "PATCH"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("fuzz"), ROOT / "examples" / "state", workers=1, extra=["--log-level", "debug"]
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def session(server: Server) -> Iterator[requests.Session]:
    with requests.Session() as s:  # keep-alive: like the API server, one connection for many reviews
        yield s


def _post(session: requests.Session, server: Server, body: bytes) -> requests.Response:
    # verify per request: requests lets $REQUESTS_CA_BUNDLE override a Session's own setting
    return session.post(
        server.url + "/validate", data=body, headers={"Content-Type": "application/json"}, verify=server.ca, timeout=10
    )


@st.composite
def reviews(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    obj = draw(mutated() | st.sampled_from(SEEDS).map(copy.deepcopy))
    kind = obj["kind"]
    group, version = KINDS[kind]
    operation = draw(OPERATIONS)
    old = draw(st.none() | mutated())
    request = {
        "uid": draw(st.text(min_size=1, max_size=40)),
        "kind": {"group": group, "version": version, "kind": draw(st.sampled_from([kind, kind, "Bogus", ""]))},
        "operation": operation,
        "namespace": draw(st.sampled_from(["default", "", "kube-system"])),
        "name": draw(st.text(max_size=20)),
        "object": obj if operation != "DELETE" else None,
        "oldObject": old,
        "dryRun": draw(st.booleans()),
        "userInfo": draw(st.none() | JSON),
    }
    if draw(st.booleans()):
        request["subResource"] = draw(st.sampled_from(["status", "", "scale"]))
    return draw(st.sampled_from(["validate", "mutate"])), request, obj


@given(reviews())
def test_random_reviews_get_a_well_formed_answer(
    server: Server, session: requests.Session, case: tuple[str, dict[str, Any], dict[str, Any] | None]
) -> None:
    webhook, request, obj = case
    body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    r = session.post(
        f"{server.url}/{webhook}", data=body, headers={"Content-Type": "application/json"}, verify=server.ca, timeout=10
    )
    if request["operation"] == "":  # not a usable review: 400 with a JSON error (docs/rules.md C)
        assert r.status_code == 400 and "error" in r.json()
        return
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == request["uid"]
    assert resp.get("status", {}).get("code") != 500, resp
    if "patch" in resp:
        assert resp["patchType"] == "JSONPatch"
        jsonpatch.apply_patch(copy.deepcopy(obj), json.loads(base64.b64decode(resp["patch"])))


@given(st.binary(max_size=300) | JSON.map(orjson.dumps))
def test_random_bodies_are_4xx_with_a_json_error(server: Server, session: requests.Session, body: bytes) -> None:
    r = _post(session, server, body)
    if r.status_code == 200:  # a body that happens to be a valid review
        assert r.json()["kind"] == "AdmissionReview"
        return
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_a_uid_cannot_forge_a_log_line(server: Server, session: requests.Session) -> None:
    forged = "x\n2099-01-01 00:00:00,000 ERROR webhook.server pid=1 FORGED\r\u2028"
    body = review_body(consumer("Service", "s", labels={"istio.io/use-waypoint": "None"}), uid=forged)
    assert _post(session, server, body).json()["response"]["uid"] == forged
    log = Path(server.log).read_text()
    assert not re.search(r"^2099-01-01", log, flags=re.M), "a request value started a log line"
    assert "FORGED" in log  # it was logged, escaped, on the decision's own line


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    srv = start_server(tmp_path, ROOT / "examples" / "state", workers=1, extra=["--log-format", "json"])
    try:
        body = review_body(consumer("Service", "s", labels={"istio.io/use-waypoint": "None"}), uid="a\nb")
        requests.post(
            srv.url + "/validate", data=body, headers={"Content-Type": "application/json"}, verify=srv.ca, timeout=10
        )
    finally:
        stop_server(srv)
    ours = [json.loads(line) for line in Path(srv.log).read_text().splitlines() if line.startswith("{")]
    decision = next(d for d in ours if d.get("uid") == "a\nb")
    assert decision["allowed"] is False and decision["codes"] == ["InvalidUseWaypoint"]
    assert decision["kind"] == "Service" and decision["operation"] == "CREATE" and "latency_ms" in decision


def test_made_up_kinds_and_operations_do_not_grow_the_metrics(server: Server, session: requests.Session) -> None:
    for i in range(300):
        req = {
            "uid": f"k{i}",
            "kind": {"group": "x", "version": "v1", "kind": f"Kind{i}"},
            "operation": f"OP{i}",
            "object": {"metadata": {"name": "a"}},
        }
        _post(
            session,
            server,
            orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}),
        )
    text = eventually(lambda: (t := server.metrics()) and 'kind="other"' in t and t, 5) or server.metrics()
    assert "Kind299" not in text and "OP299" not in text
    assert 'kind="other"' in text and 'operation="other"' in text
    series = [line for line in text.splitlines() if line.startswith("waypoint_webhook_admission_requests_total")]
    kinds = {m.group(1) for line in series if (m := re.search(r'kind="([^"]*)"', line))}
    operations = {m.group(1) for line in series if (m := re.search(r'operation="([^"]*)"', line))}
    assert kinds <= set(KINDS) | {"other"}, kinds
    assert operations <= {"CREATE", "UPDATE", "DELETE", "CONNECT", "other"}, operations


def test_a_huge_label_value_gives_a_bounded_answer(server: Server, session: requests.Session) -> None:
    value = "x" * (1024 * 1024)
    r = _post(session, server, review_body(consumer("Service", "s", labels={"istio.io/use-waypoint": value})))
    resp = r.json()["response"]
    assert resp["allowed"] is False
    assert len(resp["status"]["message"]) <= 4096
    assert all(len(c["message"]) <= 512 for c in resp["status"]["details"]["causes"])
    assert len(r.content) < 16 * 1024
