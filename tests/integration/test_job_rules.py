"""The periodic jobs' rules, run in this process against an injected clock.

The gateway and a queue worker run in-process; autorestart, downgrade and the leases are
called directly with ``now`` chosen by the test, so no test waits for a period to pass. The
real worker processes are covered end to end by test_autorestart, test_downgrade and
test_leases.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import Broker, open_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.services.downgrade import downgrade_silent
from shared.services.restarts import restart_due
from shared.store.changes import StreamChanges
from shared.store.leases import next_start, start_period
from shared.store.mongo import Database
from tests.integration.factories import v1_body

Client = TestClient[Any, Any]
Json = dict[str, Any]


async def _changes(settings: Settings, database: Database) -> tuple[StreamChanges, Broker]:
    broker = await open_broker(settings.amqp_url, settings.queue_prefix)
    return StreamChanges(database, BrokerTokenPublisher(broker)), broker


async def _create(client: Client, **fields: Any) -> str:
    resp = await client.post("/1/streams", json=v1_body(**fields))
    answer = await resp.json()
    assert resp.status == 201, answer
    return str(answer["stream_id"])


async def _claim(client: Client, stream_id: str) -> None:
    resp = await client.post(
        "/1/streams/processing/queue", json={"filters": {"stream_ids": [stream_id]}, "limit": 1}
    )
    answer = await resp.json()
    assert resp.status == 200, answer
    assert [s["stream_id"] for s in answer["streams"]] == [stream_id]


async def _fail(client: Client, stream_id: str, version: int = 1) -> None:
    item = {"stream_id": stream_id, "status": "failure", "version": version, "error": "lost"}
    resp = await client.post("/1/streams/processing/feedback", json={"streams": [item]})
    answer = await resp.json()
    assert resp.status == 200, answer
    assert [m["stream_id"] for m in answer["streams"]["modified"]] == [stream_id], answer


async def _stream(database: Database, stream_id: str) -> Json:
    doc = await database.streams.find_one({"_id": stream_id})
    assert doc is not None
    return doc


async def _statuses(database: Database, stream_id: str) -> list[str]:
    rows = await database.stream_logs.find({"stream_id": stream_id}).to_list()
    return [row["status"] for row in sorted(rows, key=lambda r: (r["log_time"], r["_id"]))]


async def test_autorestart_waits_for_its_delay_and_stops_after_its_attempts(
    client: Client, database: Database, settings: Settings, queue_worker: FeedbackWorker
) -> None:
    stream_id = await _create(client, autorestart={"restart": 1, "attempt_count": 2, "delay": 60})
    changes, broker = await _changes(settings, database)
    try:
        for attempt in (1, 2):
            await _claim(client, stream_id)
            await _fail(client, stream_id)
            due_at: datetime = (await _stream(database, stream_id))["autorestart"]["due_at"]
            assert (await _stream(database, stream_id))["autorestart"]["status"] == "in_progress"
            # one second early: nothing; at the due time: restarted once, however many sweep
            assert await restart_due(database, changes, now=due_at - timedelta(seconds=1)) == 0
            swept = await asyncio.gather(
                *(restart_due(database, changes, now=due_at) for _ in range(3))
            )
            assert sum(swept) == 1
            doc = await _stream(database, stream_id)
            assert doc["status"] == "pending"
            assert doc["autorestart"]["current_attempt"] == attempt
            assert doc["autorestart"]["status"] == "enabled"
            assert doc["autorestart"]["last_attempt_time"] is not None
        # the attempts are used up: the next failure stays
        await _claim(client, stream_id)
        await _fail(client, stream_id)
        doc = await _stream(database, stream_id)
        assert doc["autorestart"]["status"] == "failed"
        far = doc["create_time"] + timedelta(days=1)
        assert await restart_due(database, changes, now=far) == 0
        assert (await _stream(database, stream_id))["status"] == "failure"
        # one row per status change (the injected clock dates the restarts ahead)
        assert Counter(await _statuses(database, stream_id)) == {
            "pending": 3,
            "in_progress": 3,
            "failure": 3,
            "restart": 2,
        }
    finally:
        await broker.close()


async def test_autorestart_off_never_restarts(
    client: Client, database: Database, settings: Settings, queue_worker: FeedbackWorker
) -> None:
    stream_id = await _create(client, autorestart={"restart": 0, "attempt_count": 2, "delay": 1})
    await _claim(client, stream_id)
    await _fail(client, stream_id)
    changes, broker = await _changes(settings, database)
    try:
        later = (await _stream(database, stream_id))["create_time"] + timedelta(days=1)
        assert await restart_due(database, changes, now=later) == 0
        doc = await _stream(database, stream_id)
        assert (doc["status"], doc["autorestart"]["status"]) == ("failure", "disabled")
    finally:
        await broker.close()


async def test_downgrade_waits_for_the_period_after_the_claim(
    client: Client, database: Database, settings: Settings
) -> None:
    stream_id = await _create(client)
    await _claim(client, stream_id)
    claimed_at: datetime = (await _stream(database, stream_id))["claim"]["claimed_at"]
    changes, broker = await _changes(settings, database)
    try:
        early = claimed_at + timedelta(seconds=19)
        assert await downgrade_silent(database, changes, 20.0, now=early) == 0
        assert (await _stream(database, stream_id))["status"] == "in_progress"
        late = claimed_at + timedelta(seconds=21)
        assert await downgrade_silent(database, changes, 20.0, now=late) == 1
        doc = await _stream(database, stream_id)
        assert (doc["status"], doc["version"], doc["claim"]) == ("pending", 1, None)
        assert (await _statuses(database, stream_id))[-3:] == [
            "handler_lost",
            "restart",
            "pending",
        ]
        assert await downgrade_silent(database, changes, 20.0, now=late) == 0
    finally:
        await broker.close()


async def test_a_lease_starts_one_period_for_one_owner(database: Database) -> None:
    t0 = datetime(2030, 1, 1, 12, 0, 0)
    won = await asyncio.gather(
        *(start_period(database, "job", 10.0, f"owner-{n}", now=t0) for n in range(4))
    )
    assert won.count(True) == 1
    assert not await start_period(database, "job", 10.0, "owner-0", now=t0 + timedelta(seconds=9))
    assert await start_period(database, "job", 10.0, "owner-1", now=t0 + timedelta(seconds=10))
    lease = await database.leases.find_one({"_id": "job"})
    assert lease is not None
    assert (lease["runs"], lease["owner"]) == (2, "owner-1")


async def test_a_replica_asks_the_lease_again_only_when_the_next_period_can_start(
    database: Database,
) -> None:
    t0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert await next_start(database, "job", 10.0, now=t0) == t0  # never ran: now
    assert await start_period(database, "job", 10.0, "owner-0", now=t0)
    # the replica that lost learns when to ask again: not before the period ends
    assert not await start_period(database, "job", 10.0, "owner-1", now=t0 + timedelta(seconds=1))
    assert await next_start(database, "job", 10.0) == t0 + timedelta(seconds=10)
    await database.leases.delete_one({"_id": "job"})  # a lease lost: ask at once
    assert await next_start(database, "job", 10.0, now=t0 + timedelta(seconds=3)) == t0 + (
        timedelta(seconds=3)
    )
