"""Has a whole HTTP/1.1 request arrived? Decided from the bytes buffered so far, without blocking.

The worker (:mod:`webhook.admission.worker`) reads requests on its event loop and hands a connection to a
thread only once :func:`scan` says the request is complete, so a client that sends slowly, or
not at all, never holds a thread. This module only *frames*; gunicorn parses. A header block the
parser must reject is "dispatch now": it answers 400 from what is buffered, reading nothing more.
A body that can never be buffered whole (a chunked body with a malformed size line, an extension
over 1 KiB, a chunk or a total over the limit, a transfer coding other than chunked, framing
that is ambiguous) is "reject": the worker answers 400, 413 or 415 from the loop and closes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

MAX_HEADER_BYTES = 64 * 1024  # request line and headers; gunicorn's own limits are lower
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Verdict(enum.Enum):
    INCOMPLETE = "incomplete"  # wait for more bytes (within the phase's deadline)
    COMPLETE = "complete"  # the whole request is buffered
    DISPATCH = "dispatch"  # malformed or ambiguous headers: let the parser answer from the buffer
    REJECT = "reject"  # a body that can never be buffered whole: answer ``status`` now, from the loop


@dataclass(frozen=True)
class Scan:
    verdict: Verdict
    headers_done: bool = False  # the header block is complete (the body phase has started)
    expect_continue: bool = False  # the client waits for "100 Continue" before its body
    reason: str = ""
    need: int | None = None  # a Content-Length request is complete at this many buffered bytes
    status: int = 0  # REJECT: the HTTP status to answer (400, 413, 415)


def _headers(block: bytes | bytearray) -> dict[bytes, list[bytes]] | None:
    fields: dict[bytes, list[bytes]] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None  # let the parser reject it
        fields.setdefault(bytes(name.lower()), []).append(bytes(value.strip()))
    return fields


MAX_CHUNK_LINE = 1024  # a chunk-size line, extensions included
MAX_CHUNK_DIGITS = 8  # hex digits of a chunk size: 0xFFFFFFFF is far above any body we accept


def _reject(status: int, reason: str) -> Scan:
    return Scan(Verdict.REJECT, True, reason=reason, status=status)


def _chunked_end(buf: bytes | bytearray, pos: int, max_body: int) -> Scan:
    """Walk chunk-size lines from ``pos``: COMPLETE at the last chunk and its trailer section,
    INCOMPLETE while more is to come, REJECT as soon as the body can never be whole (a malformed
    size line, an extension over 1 KiB, a chunk or a total over the limit): a chunked body is
    decided here, on the loop, and a thread only ever reads one that is already buffered."""
    body_bytes = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > MAX_CHUNK_LINE:
                return _reject(400, "chunk-size line too long")
            return Scan(Verdict.INCOMPLETE, True)
        if eol - pos > MAX_CHUNK_LINE:
            return _reject(400, "chunk-size line too long")
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > MAX_CHUNK_DIGITS or not _HEX.issuperset(size_text):
            return _reject(400, "malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            # trailer fields (usually none), then an empty line
            rest = buf[eol + 2 :]
            if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest:
                return Scan(Verdict.COMPLETE, True)
            if len(rest) > MAX_HEADER_BYTES:
                return _reject(400, "trailer section too large")
            return Scan(Verdict.INCOMPLETE, True)
        body_bytes += size
        if body_bytes > max_body:
            return _reject(413, f"chunked body over the {max_body}-byte limit")
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return Scan(Verdict.INCOMPLETE, True)
        if buf[pos - 2 : pos] != b"\r\n":
            return _reject(400, "chunk data not followed by CRLF")


def scan(buf: bytes | bytearray, max_body: int) -> Scan:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            return Scan(Verdict.DISPATCH, reason="header block too large")
        return Scan(Verdict.INCOMPLETE)
    fields = _headers(buf[:end])
    if fields is None:
        return Scan(Verdict.DISPATCH, True, reason="malformed header line")
    expect = any(v.lower() == b"100-continue" for v in fields.get(b"expect", []))
    body = end + 4
    te = fields.get(b"transfer-encoding")
    cl = fields.get(b"content-length")
    if te is not None:
        codings = [c.strip().lower() for v in te for c in v.split(b",")]
        if cl is not None or len(te) != 1 or not codings or codings[-1] != b"chunked":
            return _reject(400, "ambiguous framing: Transfer-Encoding must be exactly chunked, without Content-Length")
        if len(codings) > 1:
            return _reject(415, f"unsupported transfer coding {b', '.join(codings[:-1]).decode('ascii', 'replace')}")
        return replace(_chunked_end(buf, body, max_body), expect_continue=expect)
    if cl is None:
        return Scan(Verdict.COMPLETE, True)
    if len(cl) != 1 or not cl[0].isdigit():
        return Scan(Verdict.DISPATCH, True, reason="invalid Content-Length")
    length = int(cl[0])
    if length > max_body:
        return Scan(Verdict.DISPATCH, True, reason="body over the limit")
    if len(buf) - body >= length:
        return Scan(Verdict.COMPLETE, True)
    return Scan(Verdict.INCOMPLETE, True, expect, need=body + length)
