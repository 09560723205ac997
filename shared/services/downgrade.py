"""Downgrade (behaviour reference, section 5): streams of a silent agent go back to the queue.

An agent's reports are written where they are cheap (:mod:`shared.store.liveness`: one small
insert per feedback batch), not into the stream, so the rule reads them there: an
``in_progress`` stream claimed more than ``STREAM_STATUS_OBSOLETING_PERIOD`` ago, with no
report recorded since the cutoff (neither in the liveness records nor as
``claim.last_feedback_at`` of a report that changed the stream), moves
handler_lost -> restart -> pending. The change is guarded by the claim read (its time and
last report time), so a report that changed the stream meanwhile wins; a report that only
proves liveness and lands in the same instant is answered ``modified`` and the agent's next
report learns the stream went back to the queue (``unmodified``, pending).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.core.clock import now_utc
from shared.domain import transitions
from shared.store.changes import Change, StreamChanges
from shared.store.liveness import reported_since
from shared.store.mongo import Database

log = logging.getLogger("luna_streams.downgrade")


async def downgrade_silent(
    database: Database,
    changes: StreamChanges,
    period: float,
    limit: int = 1000,
    now: datetime | None = None,
) -> int:
    """Send the streams of silent agents back to the queue (``now``: the clock, injected by
    tests); how many went."""
    now = now or now_utc()
    cutoff = now - timedelta(seconds=period)
    claimed = await (
        database.streams.find(transitions.silent_query(cutoff), {"claim.last_feedback_at": 1})
        .limit(limit)
        .to_list()
    )
    quiet = [doc["_id"] for doc in claimed if transitions.silent_since(doc, cutoff)]
    if not quiet:
        return 0
    alive = await reported_since(database, cutoff)
    silent = [stream_id for stream_id in quiet if stream_id not in alive]
    if not silent:
        return 0
    docs = await database.streams.find(
        {**transitions.silent_query(cutoff), "_id": {"$in": silent}}
    ).to_list()
    landed = await changes.apply(
        [Change(doc, transitions.handler_lost(doc, now), now) for doc in docs]
    )
    for change in landed:
        log.info("stream %s: handler lost, back in the queue", change.stream_id)
    return len(landed)
