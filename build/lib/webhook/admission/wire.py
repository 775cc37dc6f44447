"""AdmissionReview v1 in and out (docs/rules.md C), modelled on controller-runtime's admission package.

:func:`decode` turns a request body into an :class:`AdmissionRequest` or raises
:class:`BadRequest` (HTTP 400 with a JSON error body). Responses are built with
:func:`allowed`, :func:`denied`, :func:`errored` and :func:`patched`, and serialised by
:func:`encode`, so the HTTP layer never assembles review JSON by hand.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.core.findings import Judged, Severity
from webhook.core.request import AdmissionRequest, GroupVersionKind

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
MAX_BODY = 7 * 1024 * 1024  # controller-runtime's limit; docs/rules.md C: 413 above it
MAX_WARNING = 120
MAX_WARNINGS_TOTAL = 4096
MAX_CAUSE_MESSAGE = 512  # each status.details.causes[].message
MAX_STATUS_MESSAGE = 4096  # status.message, every denial joined


class BadRequest(ValueError):
    """The body is not a usable AdmissionReview (HTTP 400)."""


@dataclass
class AdmissionResponse:
    uid: str
    allowed: bool
    code: int = 200
    message: str = ""
    reason: str = ""
    causes: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    patch: list[dict[str, Any]] = field(default_factory=list)


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string")
    return value


def _obj(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object or null")
    return value


def decode(body: bytes) -> AdmissionRequest:
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    if not isinstance(review, dict):
        raise BadRequest("body must be a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise BadRequest(
            f"expected apiVersion {API_VERSION} kind {KIND}, got {review.get('apiVersion')!r} {review.get('kind')!r}"
        )
    req = review.get("request")
    if not isinstance(req, dict):
        raise BadRequest("request is missing")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest("request.uid is missing")
    kind = req.get("kind")
    if not isinstance(kind, dict):
        raise BadRequest("request.kind is missing")
    operation = _str(req, "operation", "request")
    if not operation:
        raise BadRequest("request.operation is missing")
    user_info = req.get("userInfo") if isinstance(req.get("userInfo"), dict) else {}
    return AdmissionRequest(
        uid=uid,
        kind=GroupVersionKind(
            _str(kind, "group", "request.kind"),
            _str(kind, "version", "request.kind"),
            _str(kind, "kind", "request.kind"),
        ),
        operation=operation,
        namespace=_str(req, "namespace", "request"),
        name=_str(req, "name", "request"),
        sub_resource=_str(req, "subResource", "request"),
        object=_obj(req.get("object"), "request.object"),
        old_object=_obj(req.get("oldObject"), "request.oldObject"),
        dry_run=req.get("dryRun") is True,
        user=str((user_info or {}).get("username", "")),
    )


# --- response helpers ------------------------------------------------------------------------


def elide(text: str, limit: int) -> str:
    """``text`` if it fits, else its start and how long it was: answers stay bounded whatever
    the object held (values are already shortened where messages are made; this is the net)."""
    if len(text) <= limit:
        return text
    tail = f"… ({len(text)} characters)"
    return text[: max(0, limit - len(tail))] + tail


def bound_warnings(lines: Sequence[str]) -> list[str]:
    """docs/rules.md C: each ≤120 characters where possible (the API server truncates at 256), and never
    more than 4,096 in total; what does not fit is summarised in a last line."""
    out: list[str] = []
    total = 0
    for i, line in enumerate(lines):
        if len(line) > 256:
            line = line[:255] + "…"
        rest = len(lines) - i
        tail = f"… and {rest} more warning(s)"
        if total + len(line) + (len(tail) if rest > 1 else 0) > MAX_WARNINGS_TOTAL:
            if total + len(tail) <= MAX_WARNINGS_TOTAL:
                out.append(tail)
            break
        out.append(line)
        total += len(line)
    return out


def allowed(uid: str, warnings: Sequence[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(uid, True, warnings=bound_warnings(warnings))


def patched(uid: str, patch: list[dict[str, Any]], warnings: Sequence[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(uid, True, warnings=bound_warnings(warnings), patch=patch)


def denied(uid: str, judged: Sequence[Judged], code: int = 403) -> AdmissionResponse:
    """Deny with every deny-level finding as a cause; warn-level ones stay warnings."""
    denials = [j for j in judged if j.severity is Severity.DENY]
    warns = [j.line() for j in judged if j.severity is Severity.WARN]
    return AdmissionResponse(
        uid,
        False,
        code=code,
        reason="Forbidden" if code == 403 else "BadRequest",
        message=elide("; ".join(j.line() for j in denials), MAX_STATUS_MESSAGE),
        causes=[
            {
                "reason": j.code,
                "field": elide(j.finding.field, MAX_CAUSE_MESSAGE),
                "message": elide(j.finding.message, MAX_CAUSE_MESSAGE),
            }
            for j in denials
        ],
        warnings=bound_warnings(warns),
    )


def malformed(uid: str, field_path: str, problem: str) -> AdmissionResponse:
    return AdmissionResponse(
        uid,
        False,
        code=400,
        reason="BadRequest",
        message=elide(f"malformed object: {field_path}: {problem}", MAX_STATUS_MESSAGE),
        causes=[
            {
                "reason": "FieldValueInvalid",
                "field": elide(field_path, MAX_CAUSE_MESSAGE),
                "message": elide(problem, MAX_CAUSE_MESSAGE),
            }
        ],
    )


def errored(uid: str, code: int, message: str) -> AdmissionResponse:
    return AdmissionResponse(uid, False, code=code, reason="InternalError", message=message)


def verdict_response(uid: str, judged: Sequence[Judged], patch: list[dict[str, Any]]) -> AdmissionResponse:
    if any(j.severity is Severity.DENY for j in judged):
        return denied(uid, judged)
    warns = [j.line() for j in judged]
    return patched(uid, patch, warns) if patch else allowed(uid, warns)


def to_dict(resp: AdmissionResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": resp.uid, "allowed": resp.allowed}
    if not resp.allowed or resp.code != 200:
        status: dict[str, Any] = {
            "metadata": {},
            "status": "Failure",
            "code": resp.code,
            "message": resp.message,
        }
        if resp.reason:
            status["reason"] = resp.reason
        if resp.causes:
            status["details"] = {"causes": resp.causes}
        out["status"] = status
    if resp.warnings:
        out["warnings"] = resp.warnings
    if resp.patch:
        out["patchType"] = "JSONPatch"
        out["patch"] = base64.b64encode(orjson.dumps(resp.patch)).decode("ascii")
    return out


def encode(resp: AdmissionResponse) -> bytes:
    return orjson.dumps({"apiVersion": API_VERSION, "kind": KIND, "response": to_dict(resp)})
