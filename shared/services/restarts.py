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
from shared.domain import transitions
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database
from shared.telemetry.metrics import AUTORESTARTS, RESTARTED

log = logging.getLogger("luna_streams.autorestart")

#: streams restarted by one sweep at most (the next sweep takes the rest)
SWEEP_LIMIT = 1000


async def restart_due(
    database: Database, changes: StreamChanges, now: datetime | None = None
) -> int:
    """Restart every stream whose attempt is due at ``now``; how many were restarted."""
    now = now or now_utc()
    docs: list[Doc] = await (
        database.streams.find(transitions.restart_due_query(now)).limit(SWEEP_LIMIT).to_list()
    )
    if not docs:
        return 0
    landed = await changes.apply([Change(doc, transitions.restart(doc, now), now) for doc in docs])
    AUTORESTARTS.labels(outcome=RESTARTED).inc(len(landed))
    for change in landed:
        log.info("stream %s restarted", change.stream_id)
    return len(landed)
