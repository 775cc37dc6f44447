"""Has a whole HTTP/1.1 request arrived? Decided from the bytes buffered so far, without blocking.

The worker (:mod:`webhook.admission.worker`) reads requests on its event loop and hands a connection to a
thread only once :func:`scan` says the request is complete, so a client that sends slowly, or
not at all, never holds a thread. This module only *frames*; gunicorn parses. Whenever the
framing is ambiguous or malformed, or a limit is exceeded, the verdict is "dispatch now": the
parser then rejects the request (400, 413) from what is already buffered, without waiting for more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024  # request line and headers; gunicorn's own limits are lower
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Verdict(enum.Enum):
    INCOMPLETE = "incomplete"  # wait for more bytes (within the phase's deadline)
    COMPLETE = "complete"  # the whole request is buffered
    DISPATCH = "dispatch"  # malformed, ambiguous or over a limit: let the parser answer now


@dataclass(frozen=True)
class Scan:
    verdict: Verdict
    headers_done: bool = False  # the header block is complete (the body phase has started)
    expect_continue: bool = False  # the client waits for "100 Continue" before its body
    reason: str = ""
    need: int | None = None  # a Content-Length request is complete at this many buffered bytes


def _headers(block: bytes | bytearray) -> dict[bytes, list[bytes]] | None:
    fields: dict[bytes, list[bytes]] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None  # let the parser reject it
        fields.setdefault(bytes(name.lower()), []).append(bytes(value.strip()))
    return fields


def _chunked_end(buf: bytes | bytearray, pos: int, max_body: int) -> Verdict:
    """Walk chunk-size lines from ``pos``; COMPLETE at the last chunk and its trailer section."""
    body_bytes = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return Verdict.DISPATCH if len(buf) - pos > 1024 else Verdict.INCOMPLETE
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
            return Verdict.DISPATCH
        size = int(size_text, 16)
        if size == 0:
            # trailer fields (usually none), then an empty line
            rest = buf[eol + 2 :]
            if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest:
                return Verdict.COMPLETE
            return Verdict.DISPATCH if len(rest) > MAX_HEADER_BYTES else Verdict.INCOMPLETE
        body_bytes += size
        if body_bytes > max_body:
            return Verdict.DISPATCH  # over the limit: 413 from what is buffered
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return Verdict.INCOMPLETE


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
        if cl is not None or len(te) != 1 or te[0].lower() != b"chunked":
            return Scan(Verdict.DISPATCH, True, reason="ambiguous or unsupported framing")
        return Scan(_chunked_end(buf, body, max_body), True, expect)
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
