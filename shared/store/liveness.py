"""Liveness of streams in processing, written where it is cheap.

Most feedback only says "still processing, nothing new" (same status, same video_info,
preview and error). Rewriting the whole stream for that is the dominant cost of the hot
path, so, as Kubernetes moved node heartbeats out of NodeStatus into small Lease objects
(KEP-589), such a report writes only its log row and one small record per feedback batch:
``{_id: batch id, stream_ids, at}``. The records of batches applied together are written in
one insert. The handler-lost rule (:mod:`shared.services.downgrade`) reads these records; a
TTL index drops them after :data:`shared.store.mongo.LIVENESS_RETENTION` (so
``STREAM_STATUS_OBSOLETING_PERIOD`` is at most that long).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared.store.mongo import Database, insert_new


async def record_reports(
    database: Database, reported: Iterable[tuple[str, list[str]]], at: datetime
) -> None:
    """Record that streams reported at ``at``: ``reported`` holds each batch's id and the
    streams its reports named (a batch that named none is not recorded). One unordered
    insert for them all; a batch recorded already (redelivered) keeps its first record:
    idempotent."""
    records = [
        {"_id": batch_id, "stream_ids": list(dict.fromkeys(stream_ids)), "at": at}
        for batch_id, stream_ids in reported
        if stream_ids
    ]
    await insert_new(database.liveness, records)


async def reported_since(database: Database, since: datetime) -> set[str]:
    """Streams with a report recorded at or after ``since``."""
    alive: set[str] = set()
    async for record in database.liveness.find({"at": {"$gte": since}}, {"stream_ids": 1}):
        alive.update(record["stream_ids"])
    return alive
