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

A delete is not a guarded change of one stream but two set-based phases over many
(:meth:`StreamChanges.delete`): first the documents go, chunk by chunk (so nothing claims or
changes them any more), the ``deleted`` rows they owe recorded beforehand; then the rows are
written, after every other row of their streams. The sweep also writes the rows a delete
interrupted between its phases owes (:meth:`StreamChanges.finish_deletions`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, PyMongoError

from shared.core.clock import now_utc
from shared.core.errors import BrokerUnavailable, ConcurrentModification
from shared.core.types import Doc
from shared.domain import statuses, transitions
from shared.domain.tokens import QueueToken, TokenPublisher, waits_at
from shared.domain.transitions import Transition
from shared.store.mongo import ID_CHUNK, Database, find_by_ids
from shared.store.shown import SHOWN, SHOWN_AT, forget_reports, overlay, reports_of, with_reports
from shared.telemetry.metrics import count_changes, count_entries

log = logging.getLogger("luna_streams.changes")

#: outbox entries younger than this are written again before a change replaces them
CARRY_HORIZON = timedelta(minutes=5)
#: the sweep walks this much time per query, so one query reads a bounded number
SWEEP_STEP = timedelta(seconds=2)
SWEEP_CURSOR = "changes.sweep_cursor"
#: a guarded change names its stream by ``_id``: the planner is told so (left to itself, the
#: embedded server may walk a status index, and pay for every stream in that status)
BY_ID = "_id_"


#: the server's code for a duplicate key: a log row written before
DUPLICATE_KEY = 11000

#: ``leases`` records (``kind``) of the ``deleted`` rows a delete owes, until it wrote them
DELETION = "changes.deletion"


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
                "at": when,
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
    for start in range(0, len(rows), ID_CHUNK):
        try:
            await database.stream_logs.insert_many(rows[start : start + ID_CHUNK], ordered=False)
        except BulkWriteError as exc:
            if any(e["code"] != DUPLICATE_KEY for e in exc.details["writeErrors"]):
                raise


@dataclass(slots=True)
class Change:
    """One guarded change of one stream: a :class:`~shared.domain.transitions.Transition`
    of the stream as read, and the log rows and tokens it implies.

    ``stream`` is the document as read; ``transition`` the status machine's description
    (statuses passed, guard, entering-effects); ``fields`` what the caller writes besides
    (a PUT's settings, a report's shown fields); ``scope`` the caller's selection besides
    the guard (a claim's filters). ``details`` overrides the error, video_info and preview
    the rows carry (by default the stream's); ``row_ids`` fixes the rows' ids.
    """

    stream: Doc
    transition: Transition
    when: datetime
    fields: Doc | None = None
    scope: Doc | None = None
    details: Doc | None = None
    row_ids: list[str] | None = None
    entries: list[Doc] = field(init=False)

    def __post_init__(self) -> None:
        stream, details = self.stream, self.details or {}
        self.entries = entries_for(
            stream,
            self.path,
            self.version,
            self.when,
            groups=list(self.set.get("groups", stream.get("groups")) or []),
            error=details.get("error", stream.get("last_error")),
            video_info=details.get("video_info", stream.get("video_info")),
            preview=details.get("preview", stream.get("preview")),
            row_ids=self.row_ids,
            group_tokens=self.transition.group_tokens,
        )

    @property
    def path(self) -> list[str]:
        return self.transition.path

    @property
    def version(self) -> int:
        return int(
            self.transition.version
            if self.transition.version is not None
            else self.stream["version"]
        )

    @property
    def set(self) -> Doc:
        """Every field the change writes."""
        return {**(self.fields or {}), **self.transition.set}

    @property
    def stream_id(self) -> str:
        return str(self.stream["_id"])

    def filter(self) -> Doc:
        return {**(self.scope or {}), **self.transition.guard, "_id": self.stream_id}

    @property
    def knows_shown(self) -> bool:
        """Its rows carry what it was given (``details``), not what the stream shows."""
        return all(key in (self.details or {}) for key in ("error", "video_info", "preview"))

    def show(self, report: Doc | None) -> None:
        """The stream as read shows its latest report (:mod:`shared.store.shown`): its
        rows carry that."""
        if report is not None:
            overlay(self.stream, report)
            self.__post_init__()

    def update(self) -> Doc:
        written = self.set
        changes: Doc = {"$set": dict(written)} if written else {}
        if any(key in written for key in SHOWN):
            # what the stream shows is its own again, until a newer report
            changes["$set"][SHOWN_AT] = self.when
        push: Doc = dict(self.transition.push or {})
        if self.path:
            changes.setdefault("$set", {})["outbox"] = self.entries
        elif self.entries:  # no row of its own: the entries it would replace stay
            push["outbox"] = {"$each": self.entries}
        if push:
            changes["$push"] = push
        return changes


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


class StreamChanges:
    def __init__(self, database: Database, publisher: TokenPublisher | None) -> None:
        self.database = database
        self.publisher = publisher
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

    async def apply(self, changes: Sequence[Change], *, fresh_rows: bool = False) -> list[Change]:
        """Apply guarded changes; the ones that landed (a lost race is not an error).

        ``fresh_rows``: every change writes rows whose ids no row has yet (a claim's).
        Then the update is not journaled on its own: the insert of the rows that follows it
        is, and a journaled write makes every write before it durable (the journal is one
        sequential log), so the changes are journaled before this returns, as always, for
        one flush instead of one per updated stream (the embedded server commits each
        statement of a bulk write in a transaction of its own)."""
        if not changes:
            return []
        now = now_utc()
        unshown = [c for c in changes if c.path and not c.knows_shown]
        if unshown:  # their rows (and a claim's answer) show the streams' latest reports
            reports = await reports_of(self.database, (c.stream_id for c in unshown))
            for change in unshown:
                change.show(reports.get(change.stream_id))
        await self.write_rows(self._carried([c.stream for c in changes], now))
        streams = self.database.streams
        if fresh_rows and all(c.entries for c in changes):
            streams = streams.with_options(write_concern=_unjournaled(streams.write_concern))
        if len(changes) == 1:
            result = await streams.update_one(changes[0].filter(), changes[0].update(), hint=BY_ID)
            landed = list(changes) if result.matched_count else []
        else:
            outcome = await streams.bulk_write(
                [UpdateOne(c.filter(), c.update(), hint=BY_ID) for c in changes], ordered=False
            )
            landed = (
                list(changes)
                if outcome.matched_count == len(changes)
                else await self._landed(changes)
            )
        count_changes(landed)
        await self.finish(landed)
        return landed

    async def _landed(self, changes: Sequence[Change]) -> list[Change]:
        """Which changes of a partly matched bulk write landed: their entries are in the
        outbox now. A change without entries cannot be told (it is not counted as landed:
        its caller reads the stream again, and finds it changed or not)."""
        first = {entry_id(c.entries[0]): c for c in changes if c.entries}
        if not first:
            return []
        cursor = self.database.streams.find(
            {"_id": {"$in": [c.stream_id for c in first.values()]}}, {"outbox": 1}
        )
        found = {entry_id(e) async for doc in cursor for e in doc.get("outbox") or []}
        return [c for key, c in first.items() if key in found]

    async def join_group(self, scope: Doc, group_id: str, group_name: str) -> int:
        """The streams in ``scope`` that need no token join a group, in one set-based
        guarded write (:func:`~shared.domain.transitions.join_guard`: no status passed, so no
        row); how many joined. The ``pending`` ones join by
        :func:`~shared.domain.transitions.attach`, one guarded change each."""
        result = await self.database.streams.update_many(
            {**scope, **transitions.join_guard(group_id)},
            transitions.join_update(group_id, group_name),
        )
        return int(result.modified_count)

    async def leave_group(self, scope: Doc, group_id: str, group_name: str) -> int:
        """The streams in ``scope`` leave a group, in one set-based guarded write (no status
        passed, so no row; no token); how many left."""
        result = await self.database.streams.update_many(
            {**scope, **transitions.detach_guard(group_id)},
            transitions.detach_update(group_id, group_name),
        )
        return int(result.modified_count)

    async def finish(self, landed: Sequence[Change]) -> None:
        """Write the rows of landed changes, then publish their tokens."""
        entries = [e for c in landed for e in c.entries]
        await self.write_rows(rows_of(entries))
        await self.publish(tokens_of(entries))

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
                    only_groups=bool(token.get("only_groups")),
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

    async def create(self, docs: Sequence[Doc]) -> None:
        """Insert new streams (:func:`shared.domain.documents.new_stream`) with their outbox:
        a row for the status each was created in, and its token."""
        for doc in docs:
            path = transitions.create(doc["status"], doc["create_time"]).path
            doc["outbox"] = entries_for(doc, path, 1, doc["create_time"], groups=doc["groups"])
        if len(docs) == 1:
            await self.database.streams.insert_one(docs[0])
        else:
            await self.database.streams.insert_many(list(docs), ordered=False)
        entries = [e for doc in docs for e in doc["outbox"]]
        count_entries(entries)
        await self.write_rows(rows_of(entries))
        await self.publish(tokens_of(entries))

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
        await self.write_rows(self._carried(docs, now))
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

    async def sweep(self, delay: timedelta, now: datetime | None = None, budget: int = 2000) -> int:
        """Finish the changes made since the last sweep and older than ``delay``
        (``LUNA_STREAMS_CHANGE_SWEEP_DELAY``: their writer had time to finish them): rows
        written, tokens of streams still waiting at that version published again."""
        now = now or now_utc()
        until = now - delay
        state = await self.database.leases.find_one({"_id": SWEEP_CURSOR})
        # a first sweep looks back as far as changes carry their predecessors' rows
        cursor: datetime = state["at"] if state else until - CARRY_HORIZON
        finished = 0
        try:
            finished += await self.finish_deletions(until)
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
        window = {"$gte": start, "$lt": end}
        docs = await self.database.streams.find(
            {"$or": [{"outbox.log.log_time": window}, {"outbox.at": window}]},
            {"outbox": 1, "status": 1, "version": 1, "queued_at": 1, "groups": 1},
        ).to_list()
        entries = [e for doc in docs for e in doc["outbox"] if start <= _entry_time(e) < end]
        if not entries:
            return 0, True
        rows = rows_of(entries)
        existing = {
            r["_id"]
            for r in await find_by_ids(
                self.database.stream_logs, [row["_id"] for row in rows], {"_id": 1}
            )
        }
        missing = [row for row in rows if row["_id"] not in existing]
        await self.write_rows(missing)
        streams = {doc["_id"]: doc for doc in docs}
        # a writer writes its rows before it publishes: where they are all there, it got
        # as far as the publish (and a publish that failed then is the reconciler's); a
        # group token has no row to tell, and goes again (a duplicate costs one stale
        # compare-and-set)
        unfinished = {row["stream_id"] for row in missing}
        tokens = [
            entry["token"]
            for entry in entries
            if "token" in entry
            and ("log" not in entry or entry["token"]["stream_id"] in unfinished)
            and _still_owed(streams[entry["token"]["stream_id"]], entry["token"])
        ]
        published = await self.publish(tokens)
        if missing or tokens:
            log.info("finished %d changes a writer left (%d rows)", len(tokens), len(missing))
        return len(missing) + len(tokens), published


def _entry_time(entry: Doc) -> datetime:
    when: datetime = entry["log"]["log_time"] if "log" in entry else entry["at"]
    return when


def _still_owed(stream: Doc, token: Doc) -> bool:
    """A token of the outbox is still worth publishing: its stream waits where it put it
    (and, for a group's token, is still in that group)."""
    return waits_at(stream, token["version"], token["queued_at"]) and (
        not token.get("only_groups") or set(token["groups"]) <= set(stream.get("groups") or [])
    )


def _unjournaled(concern: WriteConcern) -> WriteConcern:
    """``concern`` without waiting for the journal (see :meth:`StreamChanges.apply`)."""
    return WriteConcern(**{**concern.document, "j": False})


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
