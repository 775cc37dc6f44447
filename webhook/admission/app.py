"""Flask app factory: the thin HTTP shell around the engine (docs/rules.md C).

Routes only hand the request to a :class:`~webhook.admission.review.ReviewHandler` (read body →
decode → decide → encode) and turn its :class:`~webhook.admission.review.Answer` into a
response. Probes and HTTP errors answer with JSON bodies; the next request is always served as
usual. ``/metrics`` is not here: the probe port serves it (webhook.admission.probes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from webhook.admission.metrics import Metrics
from webhook.admission.review import Answer, ReviewHandler, json_answer
from webhook.core.engine import Engine

log = logging.getLogger("webhook.admission")

ReadinessCheck = Callable[[], str | None]  # returns why the server is not ready, or None


def respond(answer: Answer) -> Response:
    resp = Response(answer.body, status=answer.status, content_type="application/json")
    if answer.close:
        # The rest of the request was not read, so the connection cannot be reused. gunicorn
        # drops an application's Connection header; what closes it is the worker, which
        # dispatched this request without its whole body (webhook.admission.worker, handle_request).
        resp.headers["Connection"] = "close"
    return resp


def _probes(app: Flask, checks: Sequence[ReadinessCheck]) -> None:
    """The admission port answers probes too (an install that probes it keeps working); the probe
    port's process (webhook.admission.probes) answers them and ``/metrics`` off this path."""

    @app.get("/healthz")
    def healthz() -> Response:
        return respond(json_answer(200, {"status": "ok"}))

    @app.get("/readyz")
    def readyz() -> Response:
        reasons = [r for check in checks if (r := check())]
        if reasons:
            return respond(json_answer(503, {"status": "not ready", "reasons": reasons}))
        return respond(json_answer(200, {"status": "ready"}))

    @app.get("/metrics")
    def metrics_moved() -> Response:
        return respond(json_answer(404, {"error": "/metrics is served on the probe port (--probe-port)"}))


def _errors(app: Flask, metrics: Metrics) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        code = e.code if e.code and 400 <= e.code < 600 else 500
        metrics.bad_requests.labels(str(code)).inc()
        resp = respond(json_answer(code, {"error": e.description or e.name}))
        if code == 405 and e.get_response().headers.get("Allow"):
            resp.headers["Allow"] = e.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> Response:
        log.exception("unhandled error outside review")
        return respond(json_answer(500, {"error": "internal error"}))


def create_app(
    engine: Engine,
    metrics: Metrics | None = None,
    checks: Sequence[ReadinessCheck] = (),
) -> Flask:
    app = Flask("waypoint-webhook")
    metrics = metrics or Metrics()
    app.extensions["waypoint-metrics"] = metrics  # the worker counts connections it closes
    for handler in (
        ReviewHandler("validate", engine.validate, metrics),
        ReviewHandler("mutate", engine.mutate, metrics),
    ):
        app.add_url_rule(
            f"/{handler.webhook}",
            handler.webhook,
            lambda handler=handler: respond(handler(request.environ)),
            methods=["POST"],
        )
    _probes(app, checks)
    _errors(app, metrics)
    return app
