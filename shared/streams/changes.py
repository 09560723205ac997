"""The one home of every stream change: create, patch, put, delete, claim, feedback,
autorestart and downgrade all change a stream through :class:`StreamChanges`.

A change is one update of one stream document guarded by what it was computed from
(compare-and-set on status, version and whatever else the caller names). The same update
sets ``stream.outbox`` to the change's effects: one stream log row per status it passes
through (``entries_for``) and, when it enters ``pending``, its queue token. So a change and
the record of its effects commit together, and "every status change writes exactly one log
row" holds here, for every caller:

1. rows of the outbox the writer *read* that are younger than :data:`CARRY_HORIZON` are
   written first (their own writer may have died after its update: the new change is about
   to replace them), by their fixed ``_id``, so writing them again is harmless; rows this
   process itself wrote are skipped (:class:`WrittenRows`);
2. the guarded updates, in one (unordered) bulk write;
3. the rows of the changes that landed, in one insert, then their tokens.

Entries are never pulled (that would cost a second write of every document on the hot
path): the next change replaces them, and :meth:`StreamChanges.sweep` walks the changes by
time, once, after a delay, and finishes any that a dead writer left (missing rows written,
the token published again while the stream still waits at that version; a duplicate token
costs one stale compare-and-set, never a double claim).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from shared import statuses
from shared.clock import now_utc
from shared.errors import BrokerUnavailable
from shared.mongo import ID_CHUNK, Database, Doc, find_by_ids
from shared.tokens import QueueToken, TokenPublisher

log = logging.getLogger("luna_streams.changes")

#: outbox entries younger than this are written again before a change replaces them
CARRY_HORIZON = timedelta(minutes=5)
#: the sweep finishes changes older than this (their writer had time to finish them);
#: ``LUNA_STREAMS_CHANGE_SWEEP_DELAY``
SWEEP_DELAY = timedelta(seconds=10)
#: the sweep walks this much time per query, so one query reads a bounded number
SWEEP_STEP = timedelta(seconds=2)
SWEEP_CURSOR = "changes.sweep_cursor"
#: a guarded change names its stream by ``_id``: the planner is told so (left to itself, the
#: embedded server may walk a status index, and pay for every stream in that status)
BY_ID = "_id_"


#: the server's code for a duplicate key: a log row written before
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
        if status == statuses.PENDING:
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


@dataclass(slots=True)
class Change:
    """One guarded change of one stream, and the log rows and token it implies.

    ``stream`` is the document as read; ``path`` the statuses passed through (one log row
    each, ``[]`` for a change of settings only); ``guard`` what must still hold (besides
    ``_id``); ``set`` the fields written. ``details`` overrides the error, video_info and
    preview the rows carry (by default the stream's); ``row_ids`` fixes the rows' ids.
    """

    stream: Doc
    path: list[str]
    guard: Doc
    set: Doc
    when: datetime
    version: int | None = None
    push: Doc | None = None
    details: Doc | None = None
    row_ids: list[str] | None = None
    entries: list[Doc] = field(init=False)

    def __post_init__(self) -> None:
        stream, details = self.stream, self.details or {}
        self.entries = entries_for(
            stream,
            self.path,
            self.version if self.version is not None else stream["version"],
            self.when,
            groups=list(self.set.get("groups", stream.get("groups")) or []),
            error=details.get("error", stream.get("last_error")),
            video_info=details.get("video_info", stream.get("video_info")),
            preview=details.get("preview", stream.get("preview")),
            row_ids=self.row_ids,
        )

    @property
    def stream_id(self) -> str:
        return str(self.stream["_id"])

    def filter(self) -> Doc:
        return {"_id": self.stream_id, **self.guard}

    def update(self) -> Doc:
        changes: Doc = {"$set": dict(self.set)}
        if self.entries:
            changes["$set"]["outbox"] = self.entries
        if self.push:
            changes["$push"] = self.push
        return changes


def carried_rows(stream: Doc, now: datetime) -> list[Doc]:
    """Rows of the outbox read with ``stream`` that may not have been written yet."""
    since = now - CARRY_HORIZON
    return [e["log"] for e in stream.get("outbox") or [] if e["log"]["log_time"] >= since]


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


class StreamChanges:
    def __init__(
        self,
        database: Database,
        publisher: TokenPublisher | None,
        sweep_delay: timedelta = SWEEP_DELAY,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.sweep_delay = sweep_delay
        self.written = WrittenRows()

    def _carried(self, streams: Sequence[Doc], now: datetime) -> list[Doc]:
        """The rows of the outboxes read with ``streams`` that may not be written yet."""
        return [
            row
            for stream in streams
            for row in carried_rows(stream, now)
            if row["_id"] not in self.written
        ]

    async def write_rows(self, rows: list[Doc]) -> None:
        """Insert outbox rows (:func:`insert_log_rows`), and remember them as written."""
        await insert_log_rows(self.database, rows)
        self.written.add(row["_id"] for row in rows)

    async def apply(self, changes: Sequence[Change]) -> list[Change]:
        """Apply guarded changes; the ones that landed (a lost race is not an error)."""
        if not changes:
            return []
        now = now_utc()
        await self.write_rows(self._carried([c.stream for c in changes], now))
        if len(changes) == 1:
            result = await self.database.streams.update_one(
                changes[0].filter(), changes[0].update(), hint=BY_ID
            )
            landed = list(changes) if result.matched_count else []
        else:
            outcome = await self.database.streams.bulk_write(
                [UpdateOne(c.filter(), c.update(), hint=BY_ID) for c in changes], ordered=False
            )
            landed = (
                list(changes)
                if outcome.matched_count == len(changes)
                else await self._landed(changes)
            )
        await self.finish(landed)
        return landed

    async def _landed(self, changes: Sequence[Change]) -> list[Change]:
        """Which changes of a partly matched bulk write landed: their rows are in the
        outbox now (only a change that writes rows can be applied in a batch)."""
        first_rows = {c.entries[0]["log"]["_id"]: c for c in changes}
        cursor = self.database.streams.find(
            {
                "_id": {"$in": [c.stream_id for c in changes]},
                "outbox.log._id": {"$in": list(first_rows)},
            },
            {"outbox.log._id": 1},
        )
        found = {e["log"]["_id"] async for doc in cursor for e in doc.get("outbox") or []}
        return [c for row_id, c in first_rows.items() if row_id in found]

    async def finish(self, landed: Sequence[Change]) -> None:
        """Write the rows of landed changes, then publish their tokens."""
        await self.write_rows([e["log"] for c in landed for e in c.entries])
        await self.publish(tokens_of([e for c in landed for e in c.entries]))

    async def publish(self, tokens: list[Doc]) -> bool:
        if not tokens:
            return True
        if self.publisher is None:
            return False
        publisher = self.publisher
        # together: each publish waits for its own confirm, so N in turn cost N round trips
        outcomes = await asyncio.gather(
            *(
                publisher.publish_token(
                    QueueToken(
                        stream_id=token["stream_id"],
                        version=token["version"],
                        queued_at=token["queued_at"],
                    ),
                    token["groups"],
                )
                for token in tokens
            ),
            return_exceptions=True,
        )
        failed = [
            (token, outcome)
            for token, outcome in zip(tokens, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        for _, outcome in failed:
            if not isinstance(outcome, BrokerUnavailable):
                raise outcome
        if failed:  # the sweep (and the reconciler) publish them later
            token, exc = failed[0]
            log.warning(
                "token publish deferred for %d streams (%s first): %s",
                len(failed),
                token["stream_id"],
                exc,
            )
            return False
        return True

    async def create(self, docs: Sequence[Doc], path_of: dict[str, list[str]]) -> None:
        """Insert new streams with their outbox (``path_of``: stream id -> statuses)."""
        for doc in docs:
            doc["outbox"] = entries_for(
                doc, path_of[doc["_id"]], 1, doc["create_time"], groups=doc["groups"]
            )
        if len(docs) == 1:
            await self.database.streams.insert_one(docs[0])
        else:
            await self.database.streams.insert_many(list(docs), ordered=False)
        entries = [e for doc in docs for e in doc["outbox"]]
        await self.write_rows([e["log"] for e in entries])
        await self.publish(tokens_of(entries))

    async def delete(self, docs: Sequence[Doc]) -> list[Doc]:
        """Delete streams as read, each guarded by its status and version; the deleted.

        The ``deleted`` row (a fixed id per stream and version) is written before the
        delete, so no acknowledged delete lacks it; the row of a stream whose guard failed
        (a claim or patch landed meanwhile) is taken back, and the caller reads again.
        """
        if not docs:
            return []
        now = now_utc()
        rows = self._carried(docs, now)
        deleted_rows = {doc["_id"]: deleted_row(doc, now) for doc in docs}
        await insert_log_rows(self.database, [*rows, *deleted_rows.values()])
        outcome = await self.database.streams.bulk_write(
            [
                DeleteOne(
                    {"_id": doc["_id"], "status": doc["status"], "version": doc["version"]},
                    hint=BY_ID,
                )
                for doc in docs
            ],
            ordered=False,
        )
        if outcome.deleted_count == len(docs):
            return list(docs)
        ids = [doc["_id"] for doc in docs]
        alive = {d["_id"] async for d in self.database.streams.find({"_id": {"$in": ids}}, {})}
        await self.database.stream_logs.delete_many(
            {"_id": {"$in": [deleted_rows[sid]["_id"] for sid in alive]}}
        )
        return [doc for doc in docs if doc["_id"] not in alive]

    async def sweep(self, now: datetime | None = None, budget: int = 2000) -> int:
        """Finish the changes made since the last sweep and older than the sweep delay:
        rows written, tokens of streams still waiting at that version published again."""
        now = now or now_utc()
        until = now - self.sweep_delay
        state = await self.database.leases.find_one({"_id": SWEEP_CURSOR})
        # a first sweep looks back as far as changes carry their predecessors' rows
        cursor: datetime = state["at"] if state else until - CARRY_HORIZON
        finished = 0
        try:
            while cursor < until and finished < budget:
                step_end = min(cursor + SWEEP_STEP, until)
                done, published = await self._sweep_window(cursor, step_end)
                finished += done
                if not published:  # the broker refused a token: this window again next time
                    break
                cursor = step_end
                await self.database.leases.update_one(
                    {"_id": SWEEP_CURSOR}, {"$set": {"at": cursor}}, upsert=True
                )
        except PyMongoError as exc:
            log.warning("change sweep interrupted at %s: %s", cursor, exc)
        return finished

    async def _sweep_window(self, start: datetime, end: datetime) -> tuple[int, bool]:
        """Finish the changes made in ``[start, end)``: (effects, whether every token the
        window needed was published)."""
        docs = await self.database.streams.find(
            {"outbox.log.log_time": {"$gte": start, "$lt": end}},
            {"outbox": 1, "status": 1, "version": 1, "queued_at": 1},
        ).to_list()
        entries = [e for doc in docs for e in doc["outbox"] if start <= e["log"]["log_time"] < end]
        if not entries:
            return 0, True
        rows = [e["log"] for e in entries]
        existing = {
            r["_id"]
            for r in await find_by_ids(
                self.database.stream_logs, [row["_id"] for row in rows], {"_id": 1}
            )
        }
        missing = [row for row in rows if row["_id"] not in existing]
        await self.write_rows(missing)
        waiting = {
            (d["_id"], d["version"], d["queued_at"])
            for d in docs
            if d["status"] == statuses.PENDING
        }
        # a writer writes its rows before it publishes: where they are all there, it got
        # as far as the publish (and a publish that failed then is the reconciler's)
        unfinished = {row["stream_id"] for row in missing}
        tokens = [
            t
            for t in tokens_of(entries)
            if t["stream_id"] in unfinished
            and (t["stream_id"], t["version"], t["queued_at"]) in waiting
        ]
        published = await self.publish(tokens)
        if missing:
            log.info("finished %d changes a writer left (%d rows)", len(tokens), len(missing))
        return len(missing) + len(tokens), published


def deleted_row(doc: Doc, now: datetime) -> Doc:
    return log_row(
        doc,
        statuses.DELETED,
        doc["version"],
        now,
        error=doc.get("last_error"),
        video_info=doc.get("video_info"),
        preview=doc.get("preview"),
        row_id=f"{doc['_id']}:deleted:{doc['version']}",
    )
