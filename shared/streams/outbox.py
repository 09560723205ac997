"""The outbox: side effects of a state change travel inside the change itself.

A state change is one compare-and-set on the stream document that also pushes its effects
into ``stream.outbox``: the stream log rows it must write and, when it enters ``pending``,
the queue token to publish. :meth:`Outbox.flush` then writes the rows (their ``_id`` is
fixed in the entry, so a second flush writes nothing new), publishes the token and pulls
the entries. A process that dies between the update and the flush leaves the entries in
place, and :meth:`Outbox.sweep` (run periodically, and by the next flush of that stream)
finishes the job. So every status change writes exactly one log row and no pending stream
loses its token, whatever process dies when.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from shared.mongo import Database, Doc
from shared.statuses import PENDING
from shared.tokens import QueueToken, TokenPublisher

log = logging.getLogger("luna_streams.outbox")

DUPLICATE_KEY = 11000


def now_utc() -> datetime:
    """MongoDB keeps milliseconds: round here so stored and returned times agree."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def log_row(
    stream: Doc,
    status: str,
    version: int,
    log_time: datetime,
    *,
    error: str | None = None,
    video_info: dict[str, Any] | None = None,
    preview: dict[str, Any] | None = None,
    row_id: str | None = None,
) -> Doc:
    return {
        "_id": row_id or str(uuid.uuid4()),
        "stream_id": stream["_id"],
        "account_id": stream["account_id"],
        "log_time": log_time,
        "status": status,
        "error": error,
        "video_info": video_info,
        "version": version,
        "preview": preview,
    }


def entries_for(
    stream: Doc,
    path: list[str],
    version: int,
    when: datetime,
    *,
    groups: list[str],
    error: str | None = None,
    video_info: dict[str, Any] | None = None,
    preview: dict[str, Any] | None = None,
) -> list[Doc]:
    """One outbox entry per status in ``path``; the ``pending`` one carries its token."""
    entries = []
    for step, status in enumerate(path):
        # one millisecond apart (MongoDB's precision), so newest-first keeps the path's order
        log_time = when + timedelta(milliseconds=step)
        entry: Doc = {
            "log": log_row(
                stream,
                status,
                version,
                log_time,
                error=error,
                video_info=video_info,
                preview=preview,
            )
        }
        if status == PENDING:
            entry["token"] = {
                "stream_id": stream["_id"],
                "version": version,
                "queued_at": when,
                "groups": list(groups),
            }
        entries.append(entry)
    return entries


async def insert_log_rows(database: Database, rows: list[Doc]) -> None:
    """Insert stream log rows; a row whose ``_id`` exists already was written before."""
    if not rows:
        return
    try:
        await database.stream_logs.insert_many(rows, ordered=False)
    except BulkWriteError as exc:
        if any(e["code"] != DUPLICATE_KEY for e in exc.details["writeErrors"]):
            raise


def push_entries(entries: list[Doc]) -> Doc:
    """The ``$push`` part of a compare-and-set update that carries ``entries``."""
    return {"outbox": {"$each": entries}}


class Outbox:
    def __init__(self, database: Database, publisher: TokenPublisher | None) -> None:
        self.database = database
        self.publisher = publisher

    async def flush(self, stream_id: str, entries: list[Doc]) -> None:
        await self.flush_many([(stream_id, entries)])

    async def flush_many(self, batch: Iterable[tuple[str, list[Doc]]]) -> None:
        """Write the rows, publish the tokens, then pull what was done from each stream."""
        batch = [(sid, entries) for sid, entries in batch if entries]
        if not batch:
            return
        rows = [entry["log"] for _, entries in batch for entry in entries]
        await insert_log_rows(self.database, rows)
        done: list[tuple[str, list[str]]] = []
        for stream_id, entries in batch:
            published = await self._publish(entries)
            ids = [e["log"]["_id"] for e in entries if published or "token" not in e]
            if ids:
                done.append((stream_id, ids))
        if done:
            await self.database.streams.bulk_write(
                [
                    UpdateOne({"_id": sid}, {"$pull": {"outbox": {"log._id": {"$in": ids}}}})
                    for sid, ids in done
                ],
                ordered=False,
            )

    async def _publish(self, entries: list[Doc]) -> bool:
        tokens = [e["token"] for e in entries if "token" in e]
        if not tokens:
            return True
        if self.publisher is None:
            return False
        try:
            for token in tokens:
                await self.publisher.publish_token(
                    QueueToken(
                        stream_id=token["stream_id"],
                        version=token["version"],
                        queued_at=token["queued_at"],
                    ),
                    token["groups"],
                )
        except Exception as exc:  # broker down: the sweep publishes it later
            log.warning("token publish deferred for %s: %s", tokens[0]["stream_id"], exc)
            return False
        return True

    async def sweep(self, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Finish the outbox of every stream whose change is older than ``older_than``."""
        cutoff = now_utc() - older_than
        flushed = 0
        try:
            cursor = self.database.streams.find(
                {"outbox.log.log_time": {"$lt": cutoff}}, {"outbox": 1}
            )
            async for doc in cursor:
                await self.flush(doc["_id"], doc["outbox"])
                flushed += len(doc["outbox"])
        except PyMongoError as exc:
            log.warning("outbox sweep interrupted: %s", exc)
        return flushed
