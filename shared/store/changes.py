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

The entries' format is :mod:`shared.store.outbox`; deletes, set-based over many streams,
are :mod:`shared.store.deletions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo import UpdateOne, WriteConcern
from pymongo.errors import PyMongoError

from shared.core.clock import now_utc
from shared.core.errors import BrokerUnavailable
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.tokens import QueueToken, TokenPublisher, waits_at
from shared.domain.transitions import Transition
from shared.store.deletions import Deletion, StreamDeletions
from shared.store.mongo import Database, find_by_ids
from shared.store.outbox import (
    CARRY_HORIZON,
    WrittenRows,
    carried_rows,
    entries_for,
    entry_id,
    insert_log_rows,
    rows_of,
    tokens_of,
)
from shared.store.shown import SHOWN, SHOWN_AT, overlay, reports_of
from shared.telemetry.metrics import count_changes, count_entries

log = logging.getLogger("luna_streams.changes")

#: the sweep walks this much time per query, so one query reads a bounded number
SWEEP_STEP = timedelta(seconds=2)
SWEEP_CURSOR = "changes.sweep_cursor"
#: what the sweep reads of a stream whose change it may finish
SWEEP_READ: Doc = {"outbox": 1, "status": 1, "version": 1, "queued_at": 1}
#: a guarded change names its stream by ``_id``: the planner is told so (left to itself, the
#: embedded server may walk a status index, and pay for every stream in that status)
BY_ID = "_id_"


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
        # ``_id`` first: the embedded server plans by the first key it can serve from an
        # index, whatever the hint (a claim's filters begin with ``status``, and would walk
        # every pending stream's index entry for each claim)
        return {"_id": self.stream_id, **(self.scope or {}), **self.transition.guard}

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


class StreamChanges:
    def __init__(self, database: Database, publisher: TokenPublisher | None) -> None:
        self.database = database
        self.publisher = publisher
        self.written = WrittenRows()
        self.deletions = StreamDeletions(database, self)

    async def delete(self, deletion: Deletion) -> int:
        """Delete streams (:meth:`StreamDeletions.delete`); how many are gone."""
        return await self.deletions.delete(deletion)

    def carried(self, streams: Sequence[Doc], now: datetime) -> list[Doc]:
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
        await self.write_rows(self.carried([c.stream for c in changes], now))
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
        await self.finish([e for c in landed for e in c.entries])
        return landed

    async def _landed(self, changes: Sequence[Change]) -> list[Change]:
        """Which changes of a partly matched bulk write landed: their entries are in the
        outbox now. A change without entries cannot be told (it is not counted as landed:
        its caller reads the stream again, and finds it changed or not)."""
        first = {entry_id(c.entries[0]): c for c in changes if c.entries}
        docs = await find_by_ids(
            self.database.streams, [c.stream_id for c in first.values()], {"outbox": 1}
        )
        found = {entry_id(e) for doc in docs for e in doc.get("outbox") or []}
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

    async def finish(self, entries: Sequence[Doc]) -> None:
        """What outbox entries of changes that landed owe: their rows written, then their
        tokens published."""
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
        await self.finish(entries)

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
            finished += await self.deletions.finish_deletions(until)
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
        window needed was published). A group's token of an attach has no row and no time
        the sweep walks by: a writer that died before publishing it leaves it to the
        reconciler, which republishes the tokens a group's queue is short of."""
        docs = await self.database.streams.find(
            {"outbox.log.log_time": {"$gte": start, "$lt": end}}, SWEEP_READ
        ).to_list()
        entries = [
            e
            for doc in docs
            for e in doc["outbox"]
            if "log" in e and start <= e["log"]["log_time"] < end
        ]
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
        # as far as the publish (and a publish that failed then is the reconciler's)
        unfinished = {row["stream_id"] for row in missing}
        tokens = [
            token
            for token in tokens_of(entries)
            if token["stream_id"] in unfinished
            and waits_at(streams[token["stream_id"]], token["version"], token["queued_at"])
        ]
        published = await self.publish(tokens)
        if missing:
            log.info("finished %d changes a writer left (%d rows)", len(tokens), len(missing))
        return len(missing) + len(tokens), published


def _unjournaled(concern: WriteConcern) -> WriteConcern:
    """``concern`` without waiting for the journal (see :meth:`StreamChanges.apply`)."""
    return WriteConcern(**{**concern.document, "j": False})
