"""A feedback batch costs a constant number of round trips, whatever its size (design.md,
hot path): counted here on the commands the database receives.

- reports whose change lost a race (the stream was paused, patched or downgraded between
  the read and the write) are answered with the streams as they are now: one read of all
  of them, not one per stream;
- batches applied together record their liveness in one insert, and a batch recorded
  before keeps its record while the others are written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

import shared.services.feedback
from shared.core.settings import Settings
from shared.core.types import Doc
from shared.domain.feedback_batch import FeedbackBatch, FeedbackEntry
from shared.services.feedback import apply_feedback
from shared.store.changes import StreamChanges
from shared.store.mongo import Database
from tests.integration.factories import Client, create_stream, v1_body

Json = dict[str, Any]
LOST = 7


class Commands(monitoring.CommandListener):
    """The commands a client sent, as sent."""

    def __init__(self) -> None:
        self.sent: list[Doc] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def of(self, name: str, collection: str) -> list[Doc]:
        return [command for command in self.sent if command.get(name) == collection]


@contextmanager
def counted(settings: Settings) -> Iterator[tuple[Database, Commands]]:
    """A connection to the test's database whose commands are recorded."""
    commands = Commands()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        settings.mongo_uri, tz_aware=True, event_listeners=[commands]
    )
    yield Database(client=client, db=client[settings.db_name]), commands


async def claimed(client: Client, count: int) -> list[str]:
    ids = [await create_stream(client, v1_body(name=f"s{n}")) for n in range(count)]
    resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": count})
    assert resp.status == 200, await resp.text()
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == ids
    return ids


def report(stream_id: str, status: str = "in_progress", **fields: Any) -> Json:
    return {"stream_id": stream_id, "status": status, "version": 1} | fields


async def test_lost_races_are_read_again_in_one_query(
    client: Client,
    database: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = await claimed(client, LOST + 1)
    lost, won = ids[:LOST], ids[LOST]
    read = shared.services.feedback._read_streams

    async def read_then_pause(db: Database, batches: list[FeedbackBatch]) -> dict[str, Doc]:
        docs = await read(db, batches)
        # paused between the read and the write (as by a PATCH): their changes lose
        await database.streams.update_many(
            {"_id": {"$in": lost}}, {"$set": {"status": "pause"}, "$inc": {"version": 1}}
        )
        return docs

    monkeypatch.setattr(shared.services.feedback, "_read_streams", read_then_pause)
    batch = FeedbackBatch(batch_id="races", streams=[report(sid, "done") for sid in ids])
    with counted(settings) as (db, commands):
        try:
            [outcome] = await apply_feedback(db, StreamChanges(db, None), [batch])
        finally:
            await db.close()

    assert outcome.modified == [FeedbackEntry(stream_id=won, status="done", version=1)]
    assert outcome.unmodified == [
        FeedbackEntry(stream_id=sid, status="pause", version=2) for sid in lost
    ]
    # the lost ones are read again once, together (before: one find_one each)
    again = [
        find
        for find in commands.of("find", "streams")
        if find.get("projection") == {"status": 1, "version": 1}
    ]
    assert len(again) == 1, again
    assert sorted(again[0]["filter"]["_id"]["$in"]) == sorted(lost)


async def test_batches_record_their_liveness_in_one_insert(
    client: Client, database: Database, settings: Settings
) -> None:
    a, b, c = await claimed(client, 3)
    # "recorded" was recorded before (as by an earlier delivery); "quiet" names no stream
    # still in processing; "first" and "second" name a stream each, "first" two
    await database.liveness.insert_one({"_id": "recorded", "stream_ids": ["old"], "at": None})
    batches = [
        FeedbackBatch(batch_id="first", streams=[report(a), report(b), report(a)]),
        FeedbackBatch(batch_id="quiet", streams=[report(c, version=9)]),
        FeedbackBatch(batch_id="recorded", streams=[report(c)]),
        FeedbackBatch(batch_id="second", streams=[report(b, error="slow")]),
    ]
    with counted(settings) as (db, commands):
        try:
            outcomes = await apply_feedback(db, StreamChanges(db, None), batches)
        finally:
            await db.close()

    assert [(len(o.modified), len(o.unmodified)) for o in outcomes] == [
        (3, 0),
        (0, 1),
        (1, 0),
        (1, 0),
    ]
    [insert] = commands.of("insert", "stream_liveness")
    assert insert["ordered"] is False
    assert [record["_id"] for record in insert["documents"]] == ["first", "recorded", "second"]
    records = {
        record["_id"]: record["stream_ids"]
        async for record in database.liveness.find({}, {"stream_ids": 1})
    }
    # the one recorded before keeps its record; the others are written all the same
    assert records == {"first": [a, b], "recorded": ["old"], "second": [b]}
