"""AdmissionReview contract (docs/rules.md C) through the Flask app in-process; the same cases run
against real gunicorn over TLS in tests/server."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from testkit.builders import consumer, engine, gateway, namespace, state
from webhook.admission.app import create_app
from webhook.admission.metrics import Metrics
from webhook.admission.wire import BadRequest, bound_warnings, decode
from webhook.core.engine import Engine, Verdict
from webhook.core.request import AdmissionRequest

UW = "istio.io/use-waypoint"


def review(
    obj: dict[str, Any] | None,
    kind: tuple[str, str, str] = ("", "v1", "Service"),
    op: str = "CREATE",
    uid: str = "1234",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "resource": {"group": kind[0], "version": kind[1], "resource": kind[2].lower() + "s"},
            "namespace": "default",
            "operation": op,
            "object": obj,
            "oldObject": old,
            "userInfo": {"username": "alice"},
            "dryRun": False,
        },
    }


@pytest.fixture
def client() -> FlaskClient:
    idx = state(namespace("default", **{"istio.io/dataplane-mode": "ambient"}), gateway("waypoint", "default"))
    return create_app(engine(idx)).test_client()


def post(client: FlaskClient, path: str, body: Any, ctype: str = "application/json") -> TestResponse:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, data=data, headers={"Content-Type": ctype})


def test_deny_contract(client: FlaskClient) -> None:
    r = post(client, "/validate", review(consumer("Service", "s", labels={UW: "None"}), uid="abc"))
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    resp = body["response"]
    assert resp["uid"] == "abc" and resp["allowed"] is False
    assert resp["status"]["code"] == 403
    assert resp["status"]["message"].startswith("InvalidUseWaypoint: ")
    assert resp["status"]["details"]["causes"] == [
        {
            "reason": "InvalidUseWaypoint",
            "field": "metadata.labels[istio.io/use-waypoint]",
            "message": resp["status"]["details"]["causes"][0]["message"],
        }
    ]


def test_warning_contract(client: FlaskClient) -> None:
    r = post(client, "/validate", review(consumer("Service", "s", labels={UW: "ghost"})))
    resp = r.get_json()["response"]
    assert resp["allowed"] is True and "status" not in resp
    assert resp["warnings"] == [resp["warnings"][0]] and resp["warnings"][0].startswith("WaypointNotFound: ")
    assert len(resp["warnings"][0]) <= 120


def test_patch_contract(client: FlaskClient) -> None:
    gw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "wp", "namespace": "default"},
        "spec": {"gatewayClassName": "istio-waypoint"},
    }
    resp = post(client, "/mutate", review(gw, ("gateway.networking.k8s.io", "v1", "Gateway"))).get_json()["response"]
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(resp["patch"]))
    assert {op["path"] for op in ops} == {"/spec/listeners"}  # M1; M2 is off by default


def test_no_patch_fields_when_nothing_to_patch(client: FlaskClient) -> None:
    resp = post(client, "/mutate", review(consumer("Service", "s"))).get_json()["response"]
    assert resp == {"uid": "1234", "allowed": True}


def test_delete_judges_old_object(client: FlaskClient) -> None:
    resp = post(
        client,
        "/validate",
        review(None, ("gateway.networking.k8s.io", "v1", "Gateway"), "DELETE", old=gateway("waypoint")),
    ).get_json()["response"]
    assert resp["allowed"] is True


@pytest.mark.parametrize(("path", "method", "status"), [("/validate", "GET", 405), ("/mutate", "PUT", 405)])
def test_wrong_method(client: FlaskClient, path: str, method: str, status: int) -> None:
    r = client.open(path, method=method)
    assert r.status_code == status and "error" in r.get_json()


def test_wrong_content_type(client: FlaskClient) -> None:
    r = post(client, "/validate", review(consumer("Service", "s")), ctype="text/plain")
    assert r.status_code == 415 and "application/json" in r.get_json()["error"]


def test_body_over_7_mib(client: FlaskClient) -> None:
    r = post(client, "/validate", b"{" + b" " * (7 * 1024 * 1024) + b"}")
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (orjson.dumps({"apiVersion": "v1", "kind": "Pod"}), "expected apiVersion"),
        (
            orjson.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}),
            "expected apiVersion",
        ),
        (
            orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {}}}),
            "uid",
        ),
        (orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "request"),
    ],
)
def test_bad_reviews_get_400(client: FlaskClient, body: bytes, needle: str) -> None:
    r = post(client, "/validate", body)
    assert r.status_code == 400 and needle in r.get_json()["error"]


@pytest.mark.parametrize(
    ("mangle", "field"),
    [
        (lambda o: o["metadata"].__setitem__("labels", ["a"]), "metadata.labels"),
        (lambda o: o["metadata"].__setitem__("labels", {UW: 7}), "metadata.labels[istio.io/use-waypoint]"),
        (lambda o: o.__setitem__("metadata", "x"), "metadata"),
    ],
)
def test_malformed_object_gets_400_deny_with_uid(
    client: FlaskClient, mangle: Callable[[dict[str, Any]], None], field: str
) -> None:
    obj = consumer("Service", "s", labels={UW: "x"})
    mangle(obj)
    r = post(client, "/validate", review(obj, uid="m1"))
    resp = r.get_json()["response"]
    assert r.status_code == 200 and resp["uid"] == "m1" and resp["allowed"] is False
    assert resp["status"]["code"] == 400 and resp["status"]["details"]["causes"][0]["field"] == field


def test_malformed_gateway_listeners(client: FlaskClient) -> None:
    gw = gateway("wp")
    gw["spec"]["listeners"] = {"name": "mesh"}
    resp = post(client, "/mutate", review(gw, ("gateway.networking.k8s.io", "v1", "Gateway"))).get_json()["response"]
    assert resp["status"]["code"] == 400 and "spec.listeners" in resp["status"]["message"]


def test_internal_error_returns_500_review_with_uid_and_keeps_serving() -> None:
    class Boom(Engine):
        def validate(self, req: AdmissionRequest) -> Verdict:
            if req.uid == "boom":
                raise RuntimeError("secret internals")
            return super().validate(req)

    client = create_app(Boom(engine().view)).test_client()
    r = post(client, "/validate", review(consumer("Service", "s"), uid="boom"))
    resp = r.get_json()["response"]
    assert r.status_code == 200 and resp["uid"] == "boom" and resp["status"]["code"] == 500
    assert "secret internals" not in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)
    assert post(client, "/validate", review(consumer("Service", "s"), uid="ok")).get_json()["response"]["allowed"]


def test_unknown_kinds_are_allowed(client: FlaskClient) -> None:
    resp = post(client, "/validate", review({"metadata": {"name": "x"}}, ("", "v1", "ConfigMap"))).get_json()
    assert resp["response"]["allowed"] is True


def test_health_ready_and_metrics_counted_but_not_served_here() -> None:
    """Reviews are counted; ``/metrics`` itself is the probe process's (issue 18, item 4): the
    admission port only says where it went."""
    metrics = Metrics()
    client = create_app(engine(), metrics).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    post(client, "/validate", review(consumer("Service", "s", labels={UW: "None"})))
    text = metrics.exposition()[0].decode()
    assert 'waypoint_webhook_findings_total{code="InvalidUseWaypoint",severity="deny"} 1.0' in text
    assert "waypoint_webhook_admission_duration_seconds_bucket" in text
    moved = client.get("/metrics")
    assert moved.status_code == 404 and "probe port" in moved.get_json()["error"]


def test_readyz_reports_reasons() -> None:
    client = create_app(engine(), checks=[lambda: "cluster view not synced yet"]).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["reasons"] == ["cluster view not synced yet"]


def test_warnings_are_bounded() -> None:
    lines = [f"Code{i}: " + "x" * 110 for i in range(100)]
    out = bound_warnings(lines)
    assert sum(len(x) for x in out) <= 4096 and out[-1].startswith("… and ")
    assert bound_warnings(["A: " + "y" * 400])[0].endswith("…")


def test_decode_reads_dry_run_and_old_object() -> None:
    req = decode(
        orjson.dumps(
            {**review(None, op="DELETE", old={"metadata": {}}), "request": {**review(None)["request"], "dryRun": True}}
        )
    )
    assert req.dry_run is True
    with pytest.raises(BadRequest):
        decode(orjson.dumps({**review(None), "request": {**review(None)["request"], "object": [1]}}))
