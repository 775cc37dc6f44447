"""Logging set-up: text or JSON lines, and values from requests that can never forge a line.

Admission requests carry strings chosen by whoever calls the API server (a uid, a name, a label
value). Logged as they are, a ``\\n`` in one of them starts a new, forged log line. The text
format escapes every control character in the whole message; the JSON format encodes each value
(orjson escapes them). One record per admission decision carries its fields in ``extra`` under
``decision``, so both formats show the same facts.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

# C0 controls, DEL, and the Unicode line breaks some log viewers honour.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x85: "\\x85",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _render(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(escape(str(v)) for v in value)
    text = escape(str(value))
    return f'"{text}"' if (not text or " " in text or '"' in text) else text


class TextFormatter(logging.Formatter):
    """The usual one-line text format, with the message escaped and decision fields appended."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        fields = getattr(record, "decision", None)
        if fields:
            record.message += " " + " ".join(f"{k}={_render(v)}" for k, v in fields.items())
        return super().formatMessage(record)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, the decision's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "decision", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger (idempotent: each gunicorn worker calls it after the fork)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
