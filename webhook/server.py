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
    allowed,
    decode,
    encode,
    errored,
    malformed,
    patched,
    verdict_response,
)
from webhook.engine import Engine
from webhook.findings import Severity
from webhook.metrics import Metrics
from webhook.model import Malformed

log = logging.getLogger("webhook.server")

DRAIN_LIMIT = 4 * MAX_BODY  # beyond this a client is abusive: the connection is just closed
ReadinessCheck = Callable[[], str | None]  # returns why the server is not ready, or None


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def create_app(engine: Engine, metrics: Metrics | None = None, checks: Sequence[ReadinessCheck] = ()) -> Flask:
    app = Flask("waypoint-webhook")
    metrics = metrics or Metrics()

    def _too_large(message: str) -> Response:
        """413, after reading (and discarding) a bounded amount of the rest of the body, so the
        client finishes sending and sees the answer instead of a reset connection."""
        metrics.bad_requests.labels("413").inc()
        drained = 0
        while drained < DRAIN_LIMIT and (chunk := request.stream.read(64 * 1024)):
            drained += len(chunk)
        resp = _json(413, {"error": message})
        resp.headers["Connection"] = "close"
        return resp

    def review(webhook: str) -> Response:
        # The WSGI environ directly: werkzeug's header parsing and stream wrappers cost more than
        # the rules on a typical review (profiled; see bench/README.md).
        environ = request.environ
        ctype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if ctype != "application/json":
            metrics.bad_requests.labels("415").inc()
            return _json(415, {"error": f"Content-Type must be application/json, not {ctype or 'none'}"})
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return _too_large(f"body of {length} bytes exceeds the {MAX_BODY}-byte limit")
        # Chunked bodies have no length: werkzeug's stream knows where they end; read one byte past the limit.
        body = environ["wsgi.input"].read(length) if length is not None else request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _too_large(f"body exceeds the {MAX_BODY}-byte limit")
        start = time.perf_counter()
        try:
            req = decode(body)
        except BadRequest as e:
            metrics.bad_requests.labels("400").inc()
            return _json(400, {"error": str(e)})
        resp: AdmissionResponse
        result = "error"
        try:
            if webhook == "validate":
                verdict = engine.validate(req)
                resp = verdict_response(req.uid, verdict.judged, [])
                for j in verdict.judged:
                    metrics.findings.labels(j.code, str(j.severity)).inc()
                if not resp.allowed:
                    log.info(
                        "denied uid=%s %s %s/%s %s: %s",
                        req.uid,
                        req.kind.kind,
                        req.namespace,
                        req.name,
                        req.operation,
                        ",".join(j.code for j in verdict.judged if j.severity is Severity.DENY),
                    )
            else:
                ops = engine.mutate(req)
                resp = patched(req.uid, ops) if ops else allowed(req.uid)
            result = "allowed" if resp.allowed else "denied"
        except Malformed as e:
            resp = malformed(req.uid, e.field, e.problem)
            result = "malformed"
        except Exception:  # the panic recovery of controller-runtime: answer, log, keep serving
            log.exception("internal error reviewing uid=%s kind=%s", req.uid, req.kind.kind)
            resp = errored(req.uid, 500, "internal error in waypoint-webhook; see its logs")
        out = encode(resp)
        metrics.request_done(webhook, req.kind.kind, req.operation, result, time.perf_counter() - start)
        return Response(out, status=200, content_type="application/json")

    @app.post("/validate")
    def validate() -> Response:
        return review("validate")

    @app.post("/mutate")
    def mutate() -> Response:
        return review("mutate")

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
        code = e.code or 500
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
