"""The outbox of a stream change: the log rows and queue token a change owes, stored in the
stream document by the same update (:mod:`shared.store.changes`), and what a process
remembers having written of them.

An entry is ``{"log": row}`` for each status a change passes through, with ``"token"`` on
the one that enters ``pending``; a stream that joins a group while ``pending`` gets one
``{"id", "token"}`` entry with its token for that group's queue only, and no row (its
writer publishes it; if the writer dies first, the reconciler, which republishes what a
group's queue is short of).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from shared.core.types import Doc
from shared.domain import statuses
from shared.store.mongo import Database, insert_new

#: outbox entries younger than this are written again before a change replaces them
CARRY_HORIZON = timedelta(minutes=5)


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
    group_tokens: Sequence[str] = (),
) -> list[Doc]:
    """One outbox entry per status in ``path``; the ``pending`` one carries its token.

    ``group_tokens``: a stream that stays where it is in the queue (it joined these groups)
    gets one entry with its token for these groups' queues only, and no row."""
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
        if status == statuses.PENDING:
            entry["token"] = {
                "stream_id": stream["_id"],
                "version": version,
                "queued_at": when,
                "groups": list(groups),
            }
        entries.append(entry)
    if group_tokens:
        entries.append(
            {
                "id": uuid.uuid4().hex,
                "token": {
                    "stream_id": stream["_id"],
                    "version": version,
                    "queued_at": stream["queued_at"],
                    "groups": list(group_tokens),
                    "only_groups": True,
                },
            }
        )
    return entries


def rows_of(entries: Iterable[Doc]) -> list[Doc]:
    """The log rows of outbox entries (an entry with only a group token has none)."""
    return [entry["log"] for entry in entries if "log" in entry]


def entry_id(entry: Doc) -> str:
    """What names an outbox entry: its row's id, or its own."""
    return str(entry["log"]["_id"] if "log" in entry else entry["id"])


async def insert_log_rows(database: Database, rows: list[Doc]) -> None:
    """Insert stream log rows; a row whose ``_id`` exists already was written before."""
    await insert_new(database.stream_logs, rows)


def carried_rows(stream: Doc, now: datetime) -> list[Doc]:
    """Rows of the outbox read with ``stream`` that may not have been written yet."""
    since = now - CARRY_HORIZON
    return [row for row in rows_of(stream.get("outbox") or []) if row["log_time"] >= since]


def tokens_of(entries: Sequence[Doc]) -> list[Doc]:
    return [entry["token"] for entry in entries if "token" in entry]


#: outbox rows a process remembers having written (about 100 bytes each)
WRITTEN_ROWS = 20_000


class WrittenRows:
    """Ids of the outbox rows this process wrote, the most recent :data:`WRITTEN_ROWS`.

    A change writes again the rows of the outbox it replaces (step 1 above), in case their
    writer died before writing them. Most often that writer was this very process, and it
    knows it wrote them: an id goes in only once its insert was acknowledged, journaled
    (or found the row there), so skipping it loses nothing. What a dead writer left is
    not here (its process is gone) and is written as before; so is what was forgotten.
    On the hot path this spares the server an insert of duplicates with every change of
    a stream changed within :data:`CARRY_HORIZON` (a claim after its create, reports
    after their claim), about 15 ms per 100 rows on the embedded server.
    """

    def __init__(self, size: int = WRITTEN_ROWS) -> None:
        self.size = size
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest first

    def add(self, ids: Iterable[str]) -> None:
        for row_id in ids:
            self._ids.pop(row_id, None)
            self._ids[row_id] = None
        for _ in range(len(self._ids) - self.size):
            del self._ids[next(iter(self._ids))]

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
