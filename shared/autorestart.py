"""Autorestart (behaviour reference, section 6): failed streams come back by themselves.

When feedback moves a stream with ``autorestart.restart = 1`` to ``failure``, the queue
worker records the attempt's due time on the stream (``autorestart.status = in_progress``,
``autorestart.due_at``) in the same update, then sends ``restart_stream`` delayed by
``autorestart.delay``. MongoDB holds the truth: the periodic sweep restarts every stream
whose attempt is due, whatever became of the delayed message (RabbitMQ requeues messages
held past its consumer timeout). Both paths end in :func:`restart_stream`, a
compare-and-set on the attempt, so an attempt happens once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.clock import now_utc
from shared.jobs_broker import AUTORESTART, RESTART_STREAM, JobSender
from shared.mongo import Database, Doc
from shared.settings import Settings
from shared.statuses import FAILURE, PENDING, autorestart_path
from shared.streams.changes import Change, StreamChanges
from shared.streams.documents import AUTORESTART_ENABLED, AUTORESTART_IN_PROGRESS

log = logging.getLogger("luna_streams.autorestart")


class RestartScheduler:
    """The queue worker's side: send the delayed ``restart_stream`` messages."""

    def __init__(self, settings: Settings) -> None:
        self.sender = JobSender(settings, AUTORESTART)

    async def schedule(self, restarts: list[tuple[str, int, int, datetime]]) -> None:
        now = now_utc()
        for stream_id, version, attempt, due_at in restarts:
            delay_ms = max(0, int((due_at - now).total_seconds() * 1000))
            try:
                await self.sender.send(
                    RESTART_STREAM, stream_id, version, attempt, delay_ms=delay_ms
                )
            except Exception as exc:  # the due-time sweep restarts it anyway
                log.warning(
                    "restart of %s not scheduled (%s); the sweep will do it", stream_id, exc
                )

    def close(self) -> None:
        self.sender.close()


async def restart_stream(
    database: Database, changes: StreamChanges, stream_id: str, version: int, attempt: int
) -> bool:
    """failure -> restart -> pending for attempt ``attempt``; False when it is not due
    (already done, the stream changed, or was deleted)."""
    doc = await database.streams.find_one({"_id": stream_id})
    if doc is None or doc["status"] != FAILURE or doc["version"] != version:
        return False
    autorestart = doc.get("autorestart") or {}
    now = now_utc()
    due_at = autorestart.get("due_at")
    if (
        autorestart.get("status") != AUTORESTART_IN_PROGRESS
        or int(autorestart.get("current_attempt", 0)) != attempt - 1
        # not yet due: a message of an earlier failure (since reset by a PATCH to pending);
        # this failure's own message, or the sweep, restarts it in time
        or (due_at is not None and due_at > now)
    ):
        return False
    change = Change(
        doc,
        autorestart_path(),
        guard={
            "status": FAILURE,
            "version": version,
            "autorestart.status": AUTORESTART_IN_PROGRESS,
            "autorestart.current_attempt": attempt - 1,
            "autorestart.due_at": due_at,
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
    if not await changes.apply([change]):
        return False
    log.info("stream %s restarted (attempt %d)", stream_id, attempt)
    return True


async def restart_due(database: Database, changes: StreamChanges, limit: int = 1000) -> int:
    """Restart every stream whose attempt is due (the sweep)."""
    cursor = database.streams.find(
        {
            "status": FAILURE,
            "autorestart.status": AUTORESTART_IN_PROGRESS,
            "autorestart.due_at": {"$lte": now_utc()},
        },
        {"version": 1, "autorestart": 1},
    ).limit(limit)
    restarted = 0
    docs: list[Doc] = await cursor.to_list()
    for doc in docs:
        attempt = int(doc["autorestart"].get("current_attempt", 0)) + 1
        if await restart_stream(database, changes, doc["_id"], doc["version"], attempt):
            restarted += 1
    return restarted
