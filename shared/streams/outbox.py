"""The outbox entries of a change: its stream log rows and its queue token.

:mod:`shared.streams.changes` writes them into the stream with the change itself and
finishes them after; this module only builds them (and writes rows idempotently).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError

from shared.mongo import ID_CHUNK, Database, Doc
from shared.statuses import PENDING

DUPLICATE_KEY = 11000


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
    row_ids: list[str] | None = None,
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
                row_id=row_ids[step] if row_ids else None,
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
    for start in range(0, len(rows), ID_CHUNK):
        try:
            await database.stream_logs.insert_many(rows[start : start + ID_CHUNK], ordered=False)
        except BulkWriteError as exc:
            if any(e["code"] != DUPLICATE_KEY for e in exc.details["writeErrors"]):
                raise
