"""Deleting streams: not a guarded change of one stream but two set-based phases over many
(:meth:`StreamDeletions.delete`). First the documents go, chunk by chunk (so nothing claims
or changes them any more), the ``deleted`` rows they owe recorded beforehand; then the rows
are written, after every other row of their streams. The change sweep writes the rows a
delete interrupted between its phases owes (:meth:`StreamDeletions.finish_deletions`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from shared.core.clock import now_utc
from shared.core.errors import ConcurrentModification
from shared.core.types import Doc
from shared.domain import statuses
from shared.store.mongo import ID_CHUNK, Database, find_by_ids
from shared.store.outbox import insert_log_rows, log_row, rows_of
from shared.store.shown import SHOWN_AT, forget_reports, with_reports

log = logging.getLogger("luna_streams.changes")

#: ``leases`` records (``kind``) of the ``deleted`` rows a delete owes, until it wrote them
DELETION = "changes.deletion"


class RowWriter(Protocol):
    """What a delete needs of the change writer: the rows it carries, written."""

    def carried(self, streams: list[Doc], now: datetime) -> list[Doc]: ...

    async def write_rows(self, rows: list[Doc]) -> None: ...


class StreamDeletions:
    def __init__(self, database: Database, writer: RowWriter) -> None:
        self.database = database
        self.writer = writer

    async def delete(self, deletion: Deletion) -> int:
        """Delete the streams ``deletion`` names; how many are gone, each with its
        ``deleted`` row journaled as its last row.

        Set-based, in two phases, so that the streams stop being claimable first and
        their ``deleted`` rows come last:

        1. per chunk of at most :data:`ID_CHUNK` streams: one read; the rows their outbox
           may still owe (:func:`carried_rows`); a record of their ``deleted`` rows in
           ``leases`` (:data:`DELETION`); then one removal per version read (a PUT landing
           meanwhile makes its stream be read again). With its document gone, a stream's
           queue tokens are stale, and no claim, report, patch, autorestart or handler_lost
           can land on it;
        2. the ``deleted`` rows of every stream removed, timed after the last removal (so
           after the row of any change that landed before it, and after the row of any
           report read before it: :func:`shared.services.feedback.apply_feedback` times its rows
           before it reads), one insert per chunk; then the records go.

        A delete interrupted between the phases (its process killed, the server lost) left
        its records: the change sweep (:meth:`finish_deletions`) writes the rows they owe.
        """
        removed: list[Doc] = []  # the deleted rows owed, timed in phase 2
        records: list[str] = []
        contended: list[str] = []
        for scope in deletion.scopes():
            query = scope
            for _ in range(DELETE_ROUNDS):
                docs = await self.database.streams.find(query, DELETE_READ).to_list()
                changed: list[str] = []
                for start in range(0, len(docs), ID_CHUNK):
                    gone, kept = await self._remove(docs[start : start + ID_CHUNK], records)
                    removed += gone
                    changed += kept
                if not changed:
                    break
                query = {"$and": [scope, {"_id": {"$in": changed}}]}
            else:
                contended += changed
        await self._write_deleted(removed, records)
        if contended:
            raise ConcurrentModification(", ".join(contended))
        return len(removed)

    async def _write_deleted(self, rows: list[Doc], records: list[str]) -> None:
        """Phase 2 of :meth:`delete`: the ``deleted`` rows owed, timed after every removal
        of phase 1, then the records of phase 1 go."""
        after = now_utc() + timedelta(milliseconds=1)
        await insert_log_rows(self.database, [_timed(row, after) for row in rows])
        for start in range(0, len(records), ID_CHUNK):
            await self.database.leases.delete_many(
                {"_id": {"$in": records[start : start + ID_CHUNK]}}
            )

    async def _remove(self, docs: list[Doc], records: list[str]) -> tuple[list[Doc], list[str]]:
        """Phase 1 of :meth:`delete` for streams as read: the ``deleted`` rows owed (of
        the streams gone, by this call or a concurrent one: the rows' fixed ids make
        them one row), and the ids of the streams that a PUT re-versioned meanwhile."""
        if not docs:
            return [], []
        now = now_utc()
        await self.writer.write_rows(self.writer.carried(docs, now))
        rows = {
            doc["_id"]: deleted_row(doc, now) for doc in await with_reports(self.database, docs)
        }
        record = f"{DELETION}:{uuid.uuid4().hex}"
        await self.database.leases.insert_one(
            {"_id": record, "kind": DELETION, "at": now, "rows": list(rows.values())}
        )
        records.append(record)
        by_version: dict[int, list[str]] = {}
        for doc in docs:
            by_version.setdefault(doc["version"], []).append(doc["_id"])
        deleted = 0
        for version, ids in by_version.items():
            outcome = await self.database.streams.delete_many(
                {"_id": {"$in": ids}, "version": version}
            )
            deleted += outcome.deleted_count
        if deleted == len(docs):
            await forget_reports(self.database, list(rows))
            return list(rows.values()), []
        # some were not removed here: re-versioned meanwhile (they exist), or removed by
        # another delete (at the version read: the same row; or at a later one: its row)
        alive = {
            d["_id"]
            async for d in self.database.streams.find({"_id": {"$in": list(rows)}}, {"_id": 1})
        }
        await forget_reports(self.database, [sid for sid in rows if sid not in alive])
        return await self._owed([r for sid, r in rows.items() if sid not in alive]), list(alive)

    async def _owed(self, rows: list[Doc]) -> list[Doc]:
        """The ``deleted`` rows of streams that are gone, but for those whose log has a
        row of a later version (re-versioned, then deleted by another delete)."""
        if not rows:
            return []
        of = {row["stream_id"]: row for row in rows}
        later = {
            found["stream_id"]
            for found in await self.database.stream_logs.find(
                {
                    "stream_id": {"$in": list(of)},
                    "version": {"$gt": min(row["version"] for row in rows)},
                },
                {"stream_id": 1, "version": 1},
            ).to_list()
            if found["version"] > of[found["stream_id"]]["version"]
        }
        return [row for row in rows if row["stream_id"] not in later]

    async def finish_deletions(self, until: datetime) -> int:
        """Write the ``deleted`` rows that deletes recorded before ``until`` still owe
        (their writer died, or lost the server, between its phases); how many.

        A recorded stream that still exists was not deleted (the writer died before its
        removal, or a PUT re-versioned it): it owes nothing. One that is gone owes its
        row, unless rows of a later version show it was re-versioned and deleted later
        (by a delete that owes its own row)."""
        written = 0
        async for record in self.database.leases.find({"kind": DELETION, "at": {"$lt": until}}):
            rows = {row["stream_id"]: row for row in record["rows"]}
            ids = list(rows)
            alive = {d["_id"] for d in await find_by_ids(self.database.streams, ids, {"_id": 1})}
            gone = await self._owed([row for sid, row in rows.items() if sid not in alive])
            ids = [row["_id"] for row in gone]
            there = {
                r["_id"] for r in await find_by_ids(self.database.stream_logs, ids, {"_id": 1})
            }
            owed = [_timed(row, now_utc()) for row in gone if row["_id"] not in there]
            await insert_log_rows(self.database, owed)
            await self.database.leases.delete_one({"_id": record["_id"]})
            if owed:
                log.info("wrote %d deleted rows an interrupted delete owed", len(owed))
            written += len(owed)
        return written


#: what deleting a stream reads of it: its ``deleted`` row and the rows it may carry
DELETE_READ: Doc = {
    "account_id": 1,
    "version": 1,
    "last_error": 1,
    "video_info": 1,
    "preview": 1,
    SHOWN_AT: 1,
    "outbox": 1,
}
#: a delete reads a stream again at most this often when PUTs re-version it meanwhile
DELETE_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class Deletion:
    """What a delete names: the streams with these ids or these names (OR), of one
    account (or of any, ``account_id`` None)."""

    account_id: str | None
    stream_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def scopes(self) -> list[Doc]:
        """The deletion as queries of at most :data:`ID_CHUNK` ids or names each."""
        account: Doc = {} if self.account_id is None else {"account_id": self.account_id}
        return [
            {key: {"$in": values[start : start + ID_CHUNK]}, **account}
            for key, values in (("_id", self.stream_ids), ("name", self.names))
            for start in range(0, len(values), ID_CHUNK)
        ]


async def deleted_account(database: Database, stream_id: str) -> str | None:
    """The account of a stream just deleted: from the record its delete keeps until its
    ``deleted`` row is written, else from that row. In this order: the record goes only
    after the row is written, so one of the two is there whenever the delete is done."""
    record = await database.leases.find_one({"kind": DELETION, "rows.stream_id": stream_id})
    for row in record["rows"] if record is not None else []:
        if row["stream_id"] == stream_id:
            return str(row["account_id"])
    row = await database.stream_logs.find_one(
        {"stream_id": stream_id, "status": statuses.DELETED},
        {"account_id": 1},
        sort=[("log_time", -1)],
    )
    return None if row is None else str(row["account_id"])


def deleted_row(doc: Doc, at: datetime) -> Doc:
    """A stream's last row: timed at ``at`` at the earliest, after every row it carries
    (:func:`_timed` times it again once the stream is gone)."""
    step = timedelta(milliseconds=1)
    return log_row(
        doc,
        statuses.DELETED,
        doc["version"],
        max([at, *(row["log_time"] + step for row in rows_of(doc.get("outbox") or []))]),
        error=doc.get("last_error"),
        video_info=doc.get("video_info"),
        preview=doc.get("preview"),
        row_id=f"{doc['_id']}:deleted:{doc['version']}",
    )


def _timed(row: Doc, after: datetime) -> Doc:
    """A ``deleted`` row timed at ``after`` (its removal's end) or later."""
    return {**row, "log_time": max(row["log_time"], after)}
