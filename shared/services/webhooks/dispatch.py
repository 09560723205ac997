"""From stream log rows to deliveries, at least once.

Every status change writes exactly one stream log row (invariant 3: the change writer's
outbox, and its sweep, see to it), and a delete writes the stream's ``deleted`` row. The
dispatcher follows the inserts into ``stream_logs`` with a MongoDB change stream and, for
each row some webhook of its account asked about, writes one delivery document per
(row, event, webhook) (:func:`delivery_id`: written twice, it is one). The change stream's
resume token is saved in ``leases`` (:data:`CURSOR`) only after the deliveries of what it
read are written: a dispatcher killed in between reads the same rows again next time and
writes nothing twice.

The dispatcher runs as a periodic job of the autorestart worker (each
``LUNA_STREAMS_WEBHOOK_INTERVAL``); a hold in ``leases`` (:data:`HOLD`) keeps a second
run (another replica, or a period that started before this one ended) from following the
same change stream at the same time.

What each row tells (:func:`events_of`): the status the stream entered, when it differs
from the last status it was seen in before (an ``in_progress`` row of a report that
changes nothing enters nothing); ``created`` for a stream's first row; ``deleted``;
``autorestart_exhausted`` for the failure row whose change used up the attempts (the
stream still shows that change: its outbox holds the row, its autorestart is ``failed``).
Only the rows of accounts with a webhook that asks for one of their events cost a query.

A webhook is told of the rows written from its registration on. A first run (no saved
position) reads the rows since the first registration; so does a run whose change stream
cannot resume (the server's history no longer reaches back to
the saved position: a dispatcher stopped for longer than the oplog keeps), from
:data:`RESCAN` before the last saved time on, in ``stream_logs``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo.errors import DuplicateKeyError, OperationFailure

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain import statuses
from shared.services.webhooks.events import (
    AUTORESTART_EXHAUSTED,
    CREATED,
    DELETED,
    SEEN,
    STATUS_EVENTS,
    delivery_body,
)
from shared.store.mongo import Database, find_by_ids, insert_new
from shared.store.outbox import rows_of

log = logging.getLogger("luna_streams.webhooks")

CURSOR: Final = "webhooks.dispatch_cursor"
HOLD: Final = "webhooks.dispatch_hold"
#: a run's hold lasts this long unless released (a killed run's is taken over after it)
HOLD_FOR: Final = timedelta(seconds=60)
#: rows read per change-stream batch before their deliveries are written and the position
#: saved; rows read by one run at most
BATCH: Final = 500
BUDGET: Final = 20_000
#: how long a read waits for rows that are not there yet, in milliseconds
MAX_AWAIT_MS: Final = 100
#: a lost position is read again from this long before its saved time
RESCAN: Final = timedelta(minutes=2)
#: MongoDB's codes of a resume token that cannot be resumed from
LOST_POSITION: Final = frozenset({9, 260, 280, 286})
#: previous-row lookups run at once
LOOKUPS: Final = 32
PIPELINE: Final = [{"$match": {"operationType": "insert"}}]
#: what the dispatcher reads of a stream: its name, groups and last change
STREAM_FIELDS: Final = {
    "name": 1,
    "group_names": 1,
    "autorestart.status": 1,
    "outbox.log._id": 1,
}


def delivery_id(row_id: str, event: str, webhook_id: str) -> str:
    return f"{row_id}:{event}:{webhook_id}"


def possible_events(row: Doc) -> set[str]:
    """What a row may tell, before reading anything else."""
    status = row["status"]
    found = {status} if status in STATUS_EVENTS else set()
    if status == DELETED:
        found.add(DELETED)
    if status == statuses.FAILURE:
        found.add(AUTORESTART_EXHAUSTED)
    if row.get("version") == 1 and status in statuses.CREATE_STATUSES:
        found.add(CREATED)
    return found


def events_of(row: Doc, earlier: list[Doc], stream: Doc | None) -> tuple[list[str], str | None]:
    """What ``row`` tells, and the status the stream was seen in before it; ``earlier``:
    the stream's rows before it, newest first (three are enough: a change passes through
    two transient statuses at most)."""
    seen = next((r for r in earlier if r["status"] in SEEN), None)
    old_status = None if seen is None else str(seen["status"])
    status = row["status"]
    told: list[str] = []
    if status in STATUS_EVENTS and (
        seen is None or seen["status"] != status or seen["version"] != row["version"]
    ):
        told.append(status)
    if status == DELETED:
        told.append(DELETED)
    if not earlier and row["version"] == 1 and status in statuses.CREATE_STATUSES:
        told.append(CREATED)
    if status == statuses.FAILURE and stream is not None and _exhausted_by(stream, row):
        told.append(AUTORESTART_EXHAUSTED)
    return told, old_status


def _exhausted_by(stream: Doc, row: Doc) -> bool:
    """Whether the change that wrote ``row`` used up the stream's autorestart attempts."""
    last = {row["_id"] for row in rows_of(stream.get("outbox") or [])}
    state = (stream.get("autorestart") or {}).get("status")
    return row["_id"] in last and state == statuses.AUTORESTART_FAILED


def new_delivery(hook: Doc, event: str, row: Doc, body: str, now: datetime) -> Doc:
    return {
        "_id": delivery_id(row["_id"], event, hook["_id"]),
        "webhook_id": hook["_id"],
        "account_id": hook["account_id"],
        "event": event,
        "stream_id": row["stream_id"],
        "body": body,
        "state": "pending",
        "attempts": 0,
        "due_at": now,
        "create_time": now,
        "status_code": None,
        "error": None,
        "last_attempt_time": None,
        "delivered_time": None,
    }


async def insert_deliveries(database: Database, deliveries: list[Doc]) -> int:
    """Insert delivery documents; one written before (a replay) is not written again."""
    return await insert_new(database.webhook_deliveries, deliveries)


class Dispatcher:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def run(self, budget: int = BUDGET) -> int:
        """Follow the rows inserted since the saved position; the deliveries written."""
        owner = uuid.uuid4().hex
        if not await self._hold(owner):
            return 0
        try:
            return await self._follow(budget)
        finally:
            await self.database.leases.update_one(
                {"_id": HOLD, "owner": owner}, {"$set": {"held_until": now_utc()}}
            )

    async def _hold(self, owner: str) -> bool:
        now = now_utc()
        try:
            await self.database.leases.update_one(
                {"_id": HOLD, "held_until": {"$lt": now}},
                {"$set": {"held_until": now + HOLD_FOR, "owner": owner}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def _save(self, token: Any, at: datetime) -> None:
        if token is not None:
            await self.database.leases.update_one(
                {"_id": CURSOR}, {"$set": {"token": token, "at": at}}, upsert=True
            )

    async def _follow(self, budget: int) -> int:
        state = await self.database.leases.find_one({"_id": CURSOR})
        if state is None:  # a first run: from the first webhook's registration on
            first = await self.database.webhooks.find_one(
                {}, {"create_time": 1}, sort=[("create_time", 1)]
            )
            return await self._rescan(None if first is None else first["create_time"])
        try:
            stream = await self.database.stream_logs.watch(
                PIPELINE, resume_after=state.get("token"), max_await_time_ms=MAX_AWAIT_MS
            )
        except OperationFailure as exc:
            if exc.code not in LOST_POSITION:
                raise
            log.warning("webhook dispatch cannot resume (%s): reading rows again", exc.code)
            return await self._rescan(state.get("at"))
        written = read = 0
        async with stream:
            rows: list[Doc] = []
            while read < budget:
                started = now_utc()
                change = await stream.try_next()
                if change is None:
                    break
                read += 1
                rows.append(change["fullDocument"])
                if len(rows) >= BATCH:
                    written += await self.record(rows)
                    rows = []
                    await self._save(change["_id"], started)
            written += await self.record(rows)
            await self._save(stream.resume_token, now_utc())
        return written

    async def _rescan(self, since: datetime | None) -> int:
        """Start again from now, after the rows written since ``since`` (less
        :data:`RESCAN`): the position is taken first, so no row falls between."""
        async with await self.database.stream_logs.watch(
            PIPELINE, max_await_time_ms=MAX_AWAIT_MS
        ) as stream:
            first = await stream.try_next()  # the position (and a row already after it)
            position = stream.resume_token
        written = 0 if first is None else await self.record([first["fullDocument"]])
        if since is not None:
            cursor = self.database.stream_logs.find({"log_time": {"$gte": since - RESCAN}}).sort(
                [("log_time", 1), ("_id", 1)]
            )
            rows: list[Doc] = []
            async for row in cursor:
                rows.append(row)
                if len(rows) >= BATCH:
                    written += await self.record(rows)
                    rows = []
            written += await self.record(rows)
        await self._save(position, now_utc())
        return written

    async def record(self, rows: list[Doc], now: datetime | None = None) -> int:
        """Write the deliveries ``rows`` owe; how many were new."""
        accounts = {row["account_id"] for row in rows}
        if not rows:
            return 0
        hooks: dict[str, list[Doc]] = defaultdict(list)
        async for hook in self.database.webhooks.find(
            {"account_id": {"$in": list(accounts)}}, {"secret": 0}
        ):
            hooks[hook["account_id"]].append(hook)
        wanted = [
            row
            for row in rows
            if any(possible_events(row) & set(h["events"]) for h in hooks[row["account_id"]])
        ]
        if not wanted:
            return 0
        ids = list({row["stream_id"] for row in wanted})
        streams = {
            doc["_id"]: doc for doc in await find_by_ids(self.database.streams, ids, STREAM_FIELDS)
        }
        earlier = await self._earlier(wanted)
        now = now or now_utc()
        deliveries: list[Doc] = []
        for row in wanted:
            stream = streams.get(row["stream_id"])
            told, old_status = events_of(row, earlier[row["_id"]], stream)
            name = None if stream is None else stream.get("name")
            for hook in hooks[row["account_id"]]:
                if row["log_time"] < hook["create_time"]:
                    continue  # before the webhook was registered
                if hook.get("groups") is not None and (
                    stream is None or not set(hook["groups"]) & set(stream.get("group_names", []))
                ):
                    continue
                for event in told:
                    if event in hook["events"]:
                        body = delivery_body(event, row, name=name, old_status=old_status)
                        deliveries.append(new_delivery(hook, event, row, body, now))
        return await insert_deliveries(self.database, deliveries)

    async def _earlier(self, rows: list[Doc]) -> dict[str, list[Doc]]:
        """Each row's stream's three rows before it, newest first."""
        limit = asyncio.Semaphore(LOOKUPS)

        async def before(row: Doc) -> tuple[str, list[Doc]]:
            async with limit:
                found = (
                    await self.database.stream_logs.find(
                        {"stream_id": row["stream_id"], "log_time": {"$lt": row["log_time"]}},
                        {"status": 1, "version": 1},
                    )
                    .sort("log_time", -1)
                    .limit(3)
                    .to_list()
                )
            return row["_id"], found

        return dict(await asyncio.gather(*(before(row) for row in rows)))
