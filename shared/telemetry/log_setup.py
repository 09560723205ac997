"""Process logging: text or JSON lines, with the request id bound in a context variable.

A record is one line whatever a client sent: the text format escapes control characters
(newlines included) in every message, so a path, a name or an agent's string logged in it
cannot start a line of its own (:func:`escape_controls`); a traceback's lines are indented
under their record. The JSON format is one ``json.dumps`` object per record, which escapes
them too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("luna_request_id", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_tag",
}


#: C0 and C1 control characters, DEL, and the Unicode line and paragraph separators
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: what starts each line of a record's traceback in the text format
CONTINUATION = "    "


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` on one line: each control character written as its escape (``\\n``,
    ``\\x1b``, ``\\u2028``)."""
    return _CONTROLS.sub(_escape, text)


class _RequestIdFilter(logging.Filter):
    """Bind the request id of the current request (a record may carry its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL component [request id] logger: message``; no brackets outside a request.

    The message is escaped (:func:`escape_controls`): one record, one line. A traceback
    follows on lines of its own, each indented, so no line of it reads as a record.
    """

    def __init__(self, component: str) -> None:
        super().__init__(
            f"%(asctime)s %(levelname)s {component}%(request_tag)s %(name)s: %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{escape_controls(str(request_id))}]" if request_id else ""
        head, newline, tail = super().format(record).partition("\n")
        if not newline:
            return head
        # every line break of the traceback (by any reader's count) starts an indented line
        return head + "\n" + "\n".join(CONTINUATION + line for line in tail.splitlines())

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and value is not None:
                out[key] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text", component: str = "luna-streams") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiormq").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aio_pika").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("pika").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("pymongo").setLevel(max(logging.WARNING, root.level))
    # dramatiq's start and stop chatter ("Starting event loop...", "Shutting down...")
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, root.level))
