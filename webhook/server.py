"""Flask app factory: the thin HTTP shell around the engine (docs/rules.md C).

Routes only decode, dispatch and encode. Every failure mode answers: wrong method 405, wrong
content type 415, body over 7 MiB 413, unusable JSON 400 (JSON error bodies); a malformed
object gets a 400 deny inside a well-formed AdmissionReview; anything unexpected gets a 500
AdmissionReview with the uid and no stack trace, and the next request is served as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from webhook.admission import (
    MAX_BODY,
    AdmissionResponse,
    BadRequest,
    decode,
    encode,
    errored,
    malformed,
    verdict_response,
)
from webhook.engine import Engine, Verdict
from webhook.findings import Judged, Severity
from webhook.logs import escape
from webhook.metrics import Metrics
from webhook.model import Malformed
from webhook.request import AdmissionRequest

log = logging.getLogger("webhook.server")

ReadinessCheck = Callable[[], str | None]  # returns why the server is not ready, or None


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def _log_decision(
    webhook: str, req: AdmissionRequest, resp: AdmissionResponse, result: str, judged: list[Judged], seconds: float
) -> None:
    """One record per decision: at info when it denied or warned, at debug when it said nothing.
    Values come from the request, so the formatters escape them (webhook.logs)."""
    codes = [j.code for j in judged if j.severity is not Severity.OFF]
    level = logging.INFO if (not resp.allowed or codes or result == "error") else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "%s %s",
        webhook,
        "denied" if not resp.allowed else "allowed",
        extra={
            "decision": {
                "uid": req.uid[:128],
                "kind": req.kind.kind[:64],
                "namespace": req.namespace[:253],
                "name": req.name[:253],
                "operation": req.operation[:16],
                "user": req.user[:253],
                "allowed": resp.allowed,
                "result": result,
                "codes": codes,
                "latency_ms": round(seconds * 1000, 3),
            }
        },
    )


PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app(
    engine: Engine,
    metrics: Metrics | None = None,
    checks: Sequence[ReadinessCheck] = (),
    probe_port: int | None = None,
) -> Flask:
    """``probe_port``: a plain-HTTP listener for kubelet and Prometheus, which cannot present the
    client certificate ``--client-ca`` requires; only the probe paths answer there."""
    app = Flask("waypoint-webhook")
    metrics = metrics or Metrics()
    app.extensions["waypoint-metrics"] = metrics  # the worker counts connections it closes

    if probe_port is not None:
        port = str(probe_port)

        @app.before_request
        def probes_only() -> Response | None:
            environ = request.environ
            if environ.get("SERVER_PORT") == port and environ.get("PATH_INFO") not in PROBE_PATHS:
                return _json(404, {"error": "the probe port serves /healthz, /readyz and /metrics only"})
            return None

    def _bad(status: int, message: str, close: bool = False) -> Response:
        metrics.bad_requests.labels(str(status)).inc()
        log.debug("answering %d before review: %s", status, message)
        resp = _json(status, {"error": message})
        if close:
            # The rest of the request was not read, so the connection cannot be reused. gunicorn
            # drops an application's Connection header; what closes it is the worker, which
            # dispatched this request without its whole body (webhook.worker, handle_request).
            resp.headers["Connection"] = "close"
        return resp

    def _read_body() -> bytes | Response:
        """The body, or the answer for one that is unusable. The worker has already buffered the
        request (or stopped at the size limit), so nothing here waits on the network."""
        environ = request.environ
        ctype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if ctype != "application/json":
            return _bad(415, f"Content-Type must be application/json, not {ctype[:64] or 'none'}")
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return _bad(413, f"body of {length} bytes exceeds the {MAX_BODY}-byte limit", close=True)
        try:
            # Chunked bodies have no length: read one byte past the limit to detect it.
            body: bytes = environ["wsgi.input"].read(length if length is not None else MAX_BODY + 1)
        except Exception as e:  # bad chunked framing and the like: the client's fault, not ours
            return _bad(400, f"the request body could not be read: {type(e).__name__}", close=True)
        if len(body) > MAX_BODY:
            return _bad(413, f"body exceeds the {MAX_BODY}-byte limit", close=True)
        return body

    handlers: dict[str, Callable[[AdmissionRequest], Verdict]] = {
        "validate": engine.validate,
        "mutate": engine.mutate,
    }

    def _decide(webhook: str, req: AdmissionRequest) -> tuple[AdmissionResponse, str, list[Judged]]:
        """The engine's answer; a malformed object is a 400 deny, anything else unexpected a 500."""
        try:
            verdict = handlers[webhook](req)
            if verdict.skipped:
                log.debug("%s uid=%s not reviewed: %s", webhook, escape(req.uid[:128]), verdict.skipped)
            resp = verdict_response(req.uid, verdict.judged, verdict.patch)
            return resp, "allowed" if resp.allowed else "denied", verdict.judged
        except Malformed as e:
            return malformed(req.uid, e.field, e.problem), "malformed", []
        except Exception:  # the panic recovery of controller-runtime: answer, log, keep serving
            log.exception("internal error reviewing uid=%s kind=%s", escape(req.uid[:128]), escape(req.kind.kind[:64]))
            return errored(req.uid, 500, "internal error in waypoint-webhook; see its logs"), "error", []

    def review(webhook: str) -> Response:
        body = _read_body()
        if isinstance(body, Response):
            return body
        start = time.perf_counter()
        try:
            req = decode(body)
        except BadRequest as e:
            return _bad(400, str(e))
        resp, result, judged = _decide(webhook, req)
        for j in judged:
            metrics.finding(j.code, str(j.severity))
        out = encode(resp)
        elapsed = time.perf_counter() - start
        metrics.request_done(webhook, req.kind.kind, req.operation, result, elapsed)
        _log_decision(webhook, req, resp, result, judged, elapsed)
        return Response(out, status=200, content_type="application/json")

    for webhook in handlers:
        app.add_url_rule(f"/{webhook}", webhook, lambda webhook=webhook: review(webhook), methods=["POST"])

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        reasons = [r for check in checks if (r := check())]
        metrics.state_synced.set(0 if not engine.view.synced() else 1)
        if reasons:
            return _json(503, {"status": "not ready", "reasons": reasons})
        return _json(200, {"status": "ready"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, ctype = metrics.exposition()
        return Response(body, status=200, content_type=ctype)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        code = e.code if e.code and 400 <= e.code < 600 else 500
        metrics.bad_requests.labels(str(code)).inc()
        resp = _json(code, {"error": e.description or e.name})
        if code == 405 and e.get_response().headers.get("Allow"):
            resp.headers["Allow"] = e.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> Response:
        log.exception("unhandled error outside review")
        return _json(500, {"error": "internal error"})

    return app
