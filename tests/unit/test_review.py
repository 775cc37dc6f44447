"""The review path as a handler object (webhook.admission.review), walked without Flask or a server:
read body -> decode -> decide -> encode, each failure an answer (docs/rules.md C)."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from testkit.builders import consumer, engine, review_body
from webhook.admission.metrics import Metrics
from webhook.admission.review import ReviewHandler
from webhook.admission.wire import MAX_BODY
from webhook.core.engine import Verdict
from webhook.core.request import AdmissionRequest

UW = "istio.io/use-waypoint"


def environ(body: bytes, ctype: str = "application/json", length: int | None = None) -> dict[str, Any]:
    return {
        "CONTENT_TYPE": ctype,
        "CONTENT_LENGTH": str(len(body) if length is None else length),
        "wsgi.input": io.BytesIO(body),
    }


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return Metrics()


def test_a_denial_is_decided_encoded_and_counted(metrics: Metrics) -> None:
    handler = ReviewHandler("validate", engine().validate, metrics)
    answer = handler(environ(review_body(consumer("Service", "s", labels={UW: "None"}), uid="u-9")))
    response = orjson.loads(answer.body)["response"]
    assert answer.status == 200 and not answer.close
    assert response["uid"] == "u-9" and response["allowed"] is False
    assert response["status"]["details"]["causes"][0]["reason"] == "InvalidUseWaypoint"
    text = metrics.exposition()[0].decode()
    assert 'waypoint_webhook_findings_total{code="InvalidUseWaypoint",severity="deny"} 1.0' in text
    assert 'result="denied",webhook="validate"} 1.0' in text


@pytest.mark.parametrize(
    ("env", "status", "close"),
    [
        (environ(b"{}", ctype="text/plain"), 415, False),
        (environ(b"{}", length=MAX_BODY + 1), 413, True),
        (environ(b"not json"), 400, False),
        (environ(orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})), 400, False),
    ],
)
def test_unusable_requests_are_answered_before_review(
    metrics: Metrics, env: dict[str, Any], status: int, close: bool
) -> None:
    answer = ReviewHandler("validate", engine().validate, metrics)(env)
    assert (answer.status, answer.close) == (status, close)
    assert "error" in orjson.loads(answer.body)


def test_a_malformed_object_is_a_400_inside_the_review(metrics: Metrics) -> None:
    obj = consumer("Service", "s", labels={UW: "wp"})
    obj["metadata"]["labels"] = {UW: ["wp"]}
    answer = ReviewHandler("validate", engine().validate, metrics)(environ(review_body(obj)))
    response = orjson.loads(answer.body)["response"]
    assert answer.status == 200 and response["status"]["code"] == 400


def test_a_crash_in_the_rules_is_a_500_review_and_the_next_request_is_served(metrics: Metrics) -> None:
    calls: list[str] = []

    def decide(req: AdmissionRequest) -> Verdict:
        calls.append(req.uid)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return Verdict([], [])

    handler = ReviewHandler("validate", decide, metrics)
    first = orjson.loads(handler(environ(review_body(consumer("Service", "s"), uid="a"))).body)["response"]
    second = orjson.loads(handler(environ(review_body(consumer("Service", "s"), uid="b"))).body)["response"]
    assert first["status"]["code"] == 500 and "a bug" not in first["status"]["message"]
    assert second == {"uid": "b", "allowed": True}
