"""Mass deletes (issue 19): ``DELETE /1/streams`` of many streams while agents claim and
report. The delete removes the streams first, chunk by chunk (from then on nothing claims or
changes them), then writes their ``deleted`` rows: no claim sent once the removal is done
gets one of them, and every deleted stream's ``deleted`` row is its last (by time and by
version), also for the rows of reports read just before the delete."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import shared.services.feedback
from gateway.keys import STREAMS
from queue_worker.worker import FeedbackWorker
from shared.core.clock import now_utc
from shared.core.settings import Settings
from shared.core.types import Doc
from shared.domain.documents import new_stream
from shared.domain.feedback_batch import FeedbackBatch
from shared.domain.models import StreamCreateV1
from shared.messaging.broker import open_configured_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.services.feedback import apply_feedback
from shared.services.streams import StreamService
from shared.store.changes import StreamChanges
from shared.store.deletions import DELETION, deleted_account
from shared.store.mongo import ID_CHUNK, Database
from tests.integration.factories import ACCOUNT, Client, claim_ids, create_stream, v1_body


async def rows_after_deleted(database: Database, stream_ids: list[str]) -> dict[str, Any]:
    """Per stream, what breaks "the ``deleted`` row is its one and last row": no deleted
    row, several, a row logged at or after it, or a row of a later version."""
    rows: dict[str, list[Doc]] = {sid: [] for sid in stream_ids}
    for start in range(0, len(stream_ids), ID_CHUNK):
        chunk = stream_ids[start : start + ID_CHUNK]
        async for row in database.stream_logs.find({"stream_id": {"$in": chunk}}):
            rows[row["stream_id"]].append(row)
    broken: dict[str, Any] = {}
    for sid, mine in rows.items():
        deleted = [row for row in mine if row["status"] == "deleted"]
        if len(deleted) != 1:
            broken[sid] = f"{len(deleted)} deleted rows"
            continue
        last = deleted[0]
        after = [
            (row["status"], row["version"], row["log_time"])
            for row in mine
            if row is not last
            and (row["log_time"] >= last["log_time"] or row["version"] > last["version"])
        ]
        if after:
            broken[sid] = {"deleted": last["log_time"], "after": after}
    return broken


async def seed(database: Database, settings: Settings, count: int) -> tuple[list[str], list[str]]:
    """``count`` pending streams to delete and ``count`` others, interleaved in the queue,
    with their rows and queue tokens (the change writer's own create: faster than POSTs,
    the same documents)."""
    broker = await open_configured_broker(settings)
    body = StreamCreateV1.model_validate(v1_body()).model_dump(mode="json")
    doomed: list[str] = []
    others: list[str] = []
    try:
        changes = StreamChanges(database, BrokerTokenPublisher(broker))
        for start in range(0, 2 * count, ID_CHUNK):
            now = now_utc()
            docs = [
                new_stream(str(uuid.uuid4()), 1, {**body, "name": f"s{n}"}, [], now)
                for n in range(start, min(start + ID_CHUNK, 2 * count))
            ]
            await changes.create(docs)
            for n, doc in enumerate(docs):
                (doomed if n % 2 else others).append(doc["_id"])
        return doomed, others
    finally:
        await broker.close()


async def test_a_report_read_before_the_delete_logs_before_the_deleted_row(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report that proves liveness writes its row without changing the stream: the
    delete lands between the report's read of the stream and its row."""
    stream_id = await create_stream(client, v1_body(name="cam"))
    assert await claim_ids(client, {}, 1) == [stream_id]
    changes = StreamChanges(database, None)
    read = shared.services.feedback._read_streams

    async def read_then_delete(database: Database, batches: list[FeedbackBatch]) -> dict[str, Doc]:
        docs = await read(database, batches)
        await StreamService(database, changes).delete(stream_id, None)
        return docs

    monkeypatch.setattr(shared.services.feedback, "_read_streams", read_then_delete)
    item = {"stream_id": stream_id, "status": "in_progress", "version": 1}
    await apply_feedback(database, changes, [FeedbackBatch(batch_id="b1", streams=[item])])
    assert await rows_after_deleted(database, [stream_id]) == {}


#: streams named by the DELETE, and as many others the agents claim meanwhile
DOOMED = 1000
CLAIMERS = 8
REPORTERS = 2
#: seconds the delete of DOOMED streams may take under this load (about 2 s here; the delete
#: that read, wrote rows and removed each stream guarded by its status took over 20 s)
DELETE_WITHIN = 15.0


class Load:
    """Agents claiming in a loop and reporting on what they got, through the gateway."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.stop = asyncio.Event()
        #: (sent, answered, stream ids) of every claim
        self.claims: list[tuple[float, float, list[str]]] = []
        self.got: list[str] = []
        self.reports = 0

    async def claimer(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            ids = await claim_ids(self.client, {}, 5)
            self.claims.append((sent, time.monotonic(), ids))
            self.got += ids
            if not ids:
                await asyncio.sleep(0.02)

    async def reporter(self, number: int) -> None:
        """Reports of the streams got so far: most prove liveness, some fail a stream."""
        rounds = 0
        while not self.stop.is_set():
            rounds += 1
            mine = self.got[number::REPORTERS][-20:]
            items = [
                {
                    "stream_id": sid,
                    "status": "failure" if rounds % 4 == 0 and n % 5 == 0 else "in_progress",
                    "version": 1,
                }
                for n, sid in enumerate(mine)
            ]
            if items:
                resp = await self.client.post(
                    "/1/streams/processing/feedback", json={"streams": items}
                )
                assert resp.status == 200, await resp.text()
                self.reports += len(items)
            await asyncio.sleep(0.05)

    def handed_out(self, stream_ids: set[str], sent_after: float) -> int:
        return sum(
            1
            for sent, _, ids in self.claims
            if sent >= sent_after
            for sid in ids
            if sid in stream_ids
        )


def timing(
    changes: StreamChanges, moments: dict[str, float]
) -> Callable[[list[Doc], list[str]], Awaitable[None]]:
    """``changes.deletions._write_deleted`` that notes when the delete's first phase (the
    removal of the documents) ended."""
    write = changes.deletions._write_deleted

    async def noted(rows: list[Doc], records: list[str]) -> None:
        moments.setdefault("removed", time.monotonic())
        await write(rows, records)

    return noted


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_mass_delete_under_claims_and_reports(
    client: Client, database: Database, settings: Settings, queue_worker: FeedbackWorker
) -> None:
    doomed, others = await seed(database, settings, DOOMED)
    changes = client.app[STREAMS].changes
    moments: dict[str, float] = {}
    changes.deletions._write_deleted = timing(changes, moments)  # type: ignore[method-assign]
    load = Load(client)
    agents = [asyncio.create_task(load.claimer()) for _ in range(CLAIMERS)] + [
        asyncio.create_task(load.reporter(n)) for n in range(REPORTERS)
    ]
    try:
        await asyncio.sleep(1.0)
        started = time.monotonic()
        resp = await client.delete("/1/streams", json={"stream_ids": doomed})
        assert resp.status == 204, await resp.text()
        ended = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        load.stop.set()
        await asyncio.gather(*agents)
    gone = set(doomed)
    took = ended - started
    during = sum(
        1
        for _, answered, ids in load.claims
        if started <= answered <= ended
        for s in ids
        if s in gone
    )
    print(
        f"\ndelete of {DOOMED} streams under load: {took:.2f} s (removed after "
        f"{moments['removed'] - started:.2f} s); {len(load.got)} streams claimed, {during} "
        f"doomed ones handed out during the delete; {load.reports} reports"
    )
    # no claim sent once the streams were removed (let alone once the DELETE answered) got one
    assert load.handed_out(gone, sent_after=moments["removed"]) == 0
    assert load.handed_out(gone, sent_after=ended) == 0
    # only claims that ran beside the removal (phase 1, about a second) got doomed streams
    assert during <= DOOMED // 10
    assert took < DELETE_WITHIN
    assert await database.streams.count_documents({"_id": {"$in": doomed[:ID_CHUNK]}}) == 0
    left = {doc["_id"] async for doc in database.streams.find({}, {"_id": 1})}
    assert left == set(others)
    assert await database.leases.count_documents({"kind": DELETION}) == 0
    assert await rows_after_deleted(database, doomed) == {}


async def test_a_stream_being_deleted_has_its_account_for_events(database: Database) -> None:
    """Between a delete's two phases the stream is gone and its ``deleted`` row not yet
    written: its account (what an event subscriber filters on) comes from the record."""
    stream_id = str(uuid.uuid4())
    row = {"stream_id": stream_id, "account_id": ACCOUNT, "status": "deleted", "version": 1}
    await database.leases.insert_one({"_id": "changes.deletion:t", "kind": DELETION, "rows": [row]})
    assert await deleted_account(database, stream_id) == ACCOUNT
    await database.leases.delete_one({"_id": "changes.deletion:t"})
    assert await deleted_account(database, stream_id) is None
