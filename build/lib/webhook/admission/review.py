"""The review path of one webhook, as an object: read the body, decode it, decide, encode the
answer (controller-runtime's ``Webhook.ServeHTTP`` around its ``Handler``).

It takes a WSGI environ and returns an :class:`Answer`, so it can be walked and tested without
Flask; :mod:`webhook.admission.app` only routes to it. Every failure answers: wrong content type
415, a body over 7 MiB 413, unusable JSON 400 (JSON error bodies); a malformed object gets a 400
deny inside a well-formed AdmissionReview; anything unexpected a 500 AdmissionReview with the uid
and no stack trace (the panic recovery of controller-runtime), and the next request is served as
usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from werkzeug.wsgi import get_content_length

from webhook.admission.logs import escape
from webhook.admission.metrics import Metrics
from webhook.admission.wire import (
    MAX_BODY,
    AdmissionResponse,
    BadRequest,
    decode,
    encode,
    errored,
    malformed,
    verdict_response,
)
from webhook.core.engine import Verdict
from webhook.core.findings import Judged, Severity
from webhook.core.model import Malformed
from webhook.core.request import AdmissionRequest

log = logging.getLogger("webhook.admission")

Decide = Callable[[AdmissionRequest], Verdict]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body, and whether the connection must close (the rest of the
    request was not read)."""

    status: int
    body: bytes
    close: bool = False


def json_answer(status: int, payload: Mapping[str, Any], *, close: bool = False) -> Answer:
    return Answer(status, orjson.dumps(payload), close)


def reject(metrics: Metrics, status: int, message: str, *, close: bool = False) -> Answer:
    """A request refused before review: counted, logged at debug, answered with a JSON error."""
    metrics.bad_requests.labels(str(status)).inc()
    log.debug("answering %d before review: %s", status, message)
    return json_answer(status, {"error": message}, close=close)


@dataclass(frozen=True)
class Decision:
    response: AdmissionResponse
    result: str  # allowed, denied, malformed or error: the metric's and the log's label
    judged: tuple[Judged, ...] = ()


class ReviewHandler:
    """One webhook (``validate`` or ``mutate``): its name labels metrics and logs."""

    def __init__(self, webhook: str, decide: Decide, metrics: Metrics) -> None:
        self.webhook, self.decide_verdict, self.metrics = webhook, decide, metrics

    def __call__(self, environ: dict[str, Any]) -> Answer:
        body = self.read_body(environ)
        if isinstance(body, Answer):
            return body
        start = time.perf_counter()
        try:
            req = decode(body)
        except BadRequest as e:
            return reject(self.metrics, 400, str(e))
        decision = self.decide(req)
        for j in decision.judged:
            self.metrics.finding(j.code, str(j.severity))
        out = encode(decision.response)
        elapsed = time.perf_counter() - start
        self.metrics.request_done(self.webhook, req.kind.kind, req.operation, decision.result, elapsed)
        log_decision(self.webhook, req, decision, elapsed)
        return Answer(200, out)

    def read_body(self, environ: dict[str, Any]) -> bytes | Answer:
        """The body, or the answer for one that is unusable. The worker has already buffered the
        request (or stopped at the size limit), so nothing here waits on the network."""
        ctype = str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()
        if ctype != "application/json":
            return reject(self.metrics, 415, f"Content-Type must be application/json, not {ctype[:64] or 'none'}")
        length = get_content_length(environ)
        if length is not None and length > MAX_BODY:
            return reject(self.metrics, 413, f"body of {length} bytes exceeds the {MAX_BODY}-byte limit", close=True)
        try:
            # Chunked bodies have no length: read one byte past the limit to detect it.
            body: bytes = environ["wsgi.input"].read(length if length is not None else MAX_BODY + 1)
        except Exception as e:  # bad chunked framing and the like: the client's fault, not ours
            return reject(self.metrics, 400, f"the request body could not be read: {type(e).__name__}", close=True)
        if len(body) > MAX_BODY:
            return reject(self.metrics, 413, f"body exceeds the {MAX_BODY}-byte limit", close=True)
        return body

    def decide(self, req: AdmissionRequest) -> Decision:
        """The engine's answer; a malformed object is a 400 deny, anything else unexpected a 500."""
        try:
            verdict = self.decide_verdict(req)
        except Malformed as e:
            return Decision(malformed(req.uid, e.field, e.problem), "malformed")
        except Exception:  # the panic recovery of controller-runtime: answer, log, keep serving
            log.exception("internal error reviewing uid=%s kind=%s", escape(req.uid[:128]), escape(req.kind.kind[:64]))
            return Decision(errored(req.uid, 500, "internal error in waypoint-webhook; see its logs"), "error")
        if verdict.skipped:
            log.debug("%s uid=%s not reviewed: %s", self.webhook, escape(req.uid[:128]), verdict.skipped)
        resp = verdict_response(req.uid, verdict.judged, verdict.patch)
        return Decision(resp, "allowed" if resp.allowed else "denied", tuple(verdict.judged))


def log_decision(webhook: str, req: AdmissionRequest, decision: Decision, seconds: float) -> None:
    """One record per decision: at info when it denied or warned, at debug when it said nothing.
    Values come from the request, so the formatters escape them (webhook.admission.logs)."""
    resp = decision.response
    codes = [str(j.code) for j in decision.judged if j.severity is not Severity.OFF]
    level = logging.INFO if (not resp.allowed or codes or decision.result == "error") else logging.DEBUG
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
                "result": decision.result,
                "codes": codes,
                "latency_ms": round(seconds * 1000, 3),
            }
        },
    )
