"""Autorestart (behaviour reference, section 6): the whole rule, in one module.

- :func:`fresh_state`: a stream created, replaced or sent back to ``pending`` gets its
  settings with the attempts reset (``enabled``, or ``disabled`` when ``restart`` is 0);
- :func:`on_failure`: feedback that moves a stream with ``restart = 1`` to ``failure`` arms
  the next attempt in the same guarded update: ``autorestart.status = in_progress`` and
  ``autorestart.due_at = now + delay``; when ``attempt_count`` attempts are used up, the
  status becomes ``failed`` and the stream stays in ``failure``;
- :func:`restart_due`: the autorestart worker's periodic job (a dramatiq actor) restarts
  every stream whose attempt is due, failure -> restart -> pending, one guarded change per
  stream, all in one bulk write.

MongoDB holds the only truth (``due_at``): there is no delayed message to lose or to
duplicate, and a worker that dies mid-sweep leaves the streams due for the next sweep. The
guard (status, version, attempt, due time) makes an attempt happen once however many
sweeps run at the same time. Every function takes ``now``: tests run the rule against an
injected clock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.clock import now_utc
from shared.metrics import AUTORESTARTS, RESTARTED
from shared.mongo import Database, Doc
from shared.statuses import (
    AUTORESTART_DISABLED,
    AUTORESTART_ENABLED,
    AUTORESTART_FAILED,
    AUTORESTART_IN_PROGRESS,
    FAILURE,
    PENDING,
    autorestart_path,
)
from shared.streams.changes import Change, StreamChanges

log = logging.getLogger("luna_streams.autorestart")

#: streams restarted by one sweep at most (the next sweep takes the rest)
SWEEP_LIMIT = 1000


def fresh_state(settings: dict[str, Any]) -> dict[str, Any]:
    """Autorestart settings plus a fresh state: attempts reset, armed or disabled."""
    return {
        "restart": settings["restart"],
        "attempt_count": settings["attempt_count"],
        "delay": settings["delay"],
        "current_attempt": 0,
        "last_attempt_time": None,
        "status": AUTORESTART_ENABLED if settings["restart"] else AUTORESTART_DISABLED,
    }


def on_failure(doc: Doc, now: datetime) -> Doc:
    """The fields a failure sets on ``doc``'s autorestart: the next attempt armed, the
    attempts used up, or nothing when autorestart is off."""
    autorestart = doc.get("autorestart") or {}
    if not autorestart.get("restart"):
        return {}
    attempt = int(autorestart.get("current_attempt", 0)) + 1
    if attempt > int(autorestart.get("attempt_count", 0)):
        return {"autorestart.status": AUTORESTART_FAILED, "autorestart.due_at": None}
    due_at = now + timedelta(seconds=float(autorestart.get("delay", 0)))
    return {"autorestart.status": AUTORESTART_IN_PROGRESS, "autorestart.due_at": due_at}


def _restart(doc: Doc, now: datetime) -> Change:
    autorestart = doc["autorestart"]
    attempt = int(autorestart.get("current_attempt", 0)) + 1
    return Change(
        doc,
        autorestart_path(),
        guard={
            "status": FAILURE,
            "version": doc["version"],
            "autorestart.status": AUTORESTART_IN_PROGRESS,
            "autorestart.current_attempt": attempt - 1,
            "autorestart.due_at": autorestart["due_at"],
        },
        set={
            "status": PENDING,
            "queued_at": now,
            "claim": None,
            "autorestart.current_attempt": attempt,
            "autorestart.last_attempt_time": now,
            "autorestart.status": AUTORESTART_ENABLED,
            "autorestart.due_at": None,
        },
        when=now,
    )


async def restart_due(
    database: Database, changes: StreamChanges, now: datetime | None = None
) -> int:
    """Restart every stream whose attempt is due at ``now``; how many were restarted."""
    now = now or now_utc()
    docs: list[Doc] = await (
        database.streams.find(
            {
                "status": FAILURE,
                "autorestart.status": AUTORESTART_IN_PROGRESS,
                "autorestart.due_at": {"$lte": now},
            }
        )
        .limit(SWEEP_LIMIT)
        .to_list()
    )
    if not docs:
        return 0
    landed = await changes.apply([_restart(doc, now) for doc in docs])
    AUTORESTARTS.labels(outcome=RESTARTED).inc(len(landed))
    for change in landed:
        log.info("stream %s restarted", change.stream_id)
    return len(landed)
