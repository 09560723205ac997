"""Downgrade (behaviour reference, section 5): streams of a silent agent go back to the queue.

An ``in_progress`` stream whose last feedback (or claim) is older than
``STREAM_STATUS_OBSOLETING_PERIOD`` moves handler_lost -> restart -> pending, by a
compare-and-set on the feedback time read: a feedback that lands at the same moment changes
that time, so either it wins (the stream stays with its agent) or the downgrade wins (the
agent's next report is answered ``unmodified``, status pending).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.mongo import Database
from shared.statuses import IN_PROGRESS, PENDING, downgrade_path
from shared.streams.outbox import Outbox, entries_for, now_utc, push_entries

log = logging.getLogger("luna_streams.downgrade")


async def downgrade_silent(
    database: Database, outbox: Outbox, period: float, limit: int = 1000
) -> int:
    now = now_utc()
    cutoff = now - timedelta(seconds=period)
    docs = await (
        database.streams.find(
            {"status": IN_PROGRESS, "claim.last_feedback_at": {"$lt": cutoff}}, {"outbox": 0}
        )
        .limit(limit)
        .to_list()
    )
    downgraded = 0
    for doc in docs:
        entries = entries_for(
            doc,
            downgrade_path(),
            doc["version"],
            now,
            groups=doc.get("groups", []),
            error=doc.get("last_error"),
            video_info=doc.get("video_info"),
            preview=doc.get("preview"),
        )
        result = await database.streams.update_one(
            {
                "_id": doc["_id"],
                "status": IN_PROGRESS,
                "version": doc["version"],
                "claim.last_feedback_at": doc["claim"]["last_feedback_at"],
            },
            {
                "$set": {"status": PENDING, "queued_at": now, "claim": None},
                "$push": push_entries(entries),
            },
        )
        if result.modified_count:
            await outbox.flush(doc["_id"], entries)
            downgraded += 1
            log.info("stream %s: handler lost, back in the queue", doc["_id"])
    return downgraded
