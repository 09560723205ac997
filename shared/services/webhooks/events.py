"""What a webhook can be told, and the body of one delivery.

An event is the status a stream enters (one per status in :data:`STATUS_EVENTS`, each from
the stream log row of that change), or one of :data:`STREAM_EVENTS`: the stream was
created (its first row), deleted (its ``deleted`` row), or a failure used up its
autorestart attempts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal, get_args

from shared.domain import statuses
from shared.domain.documents import format_time

AUTORESTART_EXHAUSTED: Final = "autorestart_exhausted"
CREATED: Final = "created"
DELETED: Final = statuses.DELETED
#: a delivery asked for by ``POST .../webhooks/{id}/test``: no stream, nothing happened
TEST: Final = "test"

#: statuses a stream enters that a webhook may ask for (``restart`` is never asked for:
#: it is always followed by ``pending``)
STATUS_EVENTS: Final = (
    statuses.FAILURE,
    statuses.HANDLER_LOST,
    statuses.DONE,
    statuses.CANCEL,
    statuses.PAUSE,
    statuses.PENDING,
    statuses.IN_PROGRESS,
)
STREAM_EVENTS: Final = (AUTORESTART_EXHAUSTED, CREATED, DELETED)
EVENTS: Final = (*STATUS_EVENTS, *STREAM_EVENTS)

WebhookEvent = Literal[
    "failure",
    "handler_lost",
    "done",
    "cancel",
    "pause",
    "pending",
    "in_progress",
    "autorestart_exhausted",
    "created",
    "deleted",
]
if get_args(WebhookEvent) != EVENTS:  # one list, spelled twice for the type checker
    raise RuntimeError(f"{WebhookEvent} differs from {EVENTS}")

#: the statuses a stream is seen in: an event's ``old_status`` is the last of these
#: (``restart`` and ``handler_lost`` are steps of a change, not where it came from)
SEEN: Final = statuses.STORED


def delivery_body(
    event: str,
    row: dict[str, Any],  # a stream log row (or a test's, without stream)
    *,
    name: str | None,
    old_status: str | None,
) -> str:
    """The JSON a delivery posts: what happened to which stream, and when (the row's time)."""
    body = {
        "event": event,
        "stream_id": row["stream_id"],
        "account_id": row["account_id"],
        "name": name,
        "old_status": old_status,
        "new_status": row["status"],
        "version": row["version"],
        "error": row.get("error"),
        "time": format_time(row["log_time"]),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)
