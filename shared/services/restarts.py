"""The autorestart sweep: every stream whose attempt is due goes failure -> restart ->
pending (the rule: :mod:`shared.domain.autorestart`).

MongoDB holds the only truth (``due_at``): there is no delayed message to lose or to
duplicate, and a worker that dies mid-sweep leaves the streams due for the next sweep. The
guard (status, version, attempt, due time) makes an attempt happen once however many
sweeps run at the same time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain.statuses import (
    AUTORESTART_ENABLED,
    AUTORESTART_IN_PROGRESS,
    FAILURE,
    PENDING,
    autorestart_path,
)
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database
from shared.telemetry.metrics import AUTORESTARTS, RESTARTED

log = logging.getLogger("luna_streams.autorestart")

#: streams restarted by one sweep at most (the next sweep takes the rest)
SWEEP_LIMIT = 1000


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
