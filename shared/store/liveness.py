"""Liveness of streams in processing, written where it is cheap.

Most feedback only says "still processing, nothing new" (same status, same video_info,
preview and error). Rewriting the whole stream for that is the dominant cost of the hot
path, so, as Kubernetes moved node heartbeats out of NodeStatus into small Lease objects
(KEP-589), such a report writes only its log row and one small record per feedback batch:
``{_id: batch id, stream_ids, at}``. The handler-lost rule (:mod:`shared.services.downgrade`) reads
these records; a TTL index drops them after :data:`RETENTION` (so
``STREAM_STATUS_OBSOLETING_PERIOD`` is at most that long).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from shared.store.mongo import Database

RETENTION = timedelta(hours=1)


async def record_reports(
    database: Database, batch_id: str, stream_ids: list[str], at: datetime
) -> None:
    """Record that these streams reported at ``at`` (once per batch id: idempotent)."""
    if not stream_ids:
        return
    with contextlib.suppress(DuplicateKeyError):  # a redelivered batch: recorded already
        await database.liveness.insert_one(
            {"_id": batch_id, "stream_ids": list(dict.fromkeys(stream_ids)), "at": at}
        )


async def reported_since(database: Database, since: datetime) -> set[str]:
    """Streams with a report recorded at or after ``since``."""
    alive: set[str] = set()
    async for record in database.liveness.find({"at": {"$gte": since}}, {"stream_ids": 1}):
        alive.update(record["stream_ids"])
    return alive
