"""The dispatch reconciler: a pending stream whose queue token was lost gets a new one.

Tokens are dropped behind the service's back (the all-streams queue is purged); the
autorestart worker (a real process, short periods) notices the queue holds fewer tokens than
there are pending streams and publishes them again. Duplicates are harmless: each stream is
claimed once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from shared.core.settings import Settings
from shared.domain.tokens import QueueToken
from shared.messaging.broker import QueueNames, open_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.services import reconciler
from shared.services.reconciler import reconcile_tokens
from shared.store.mongo import Database
from tests.integration.factories import (
    Client,
    claim_ids,
    create_pending,
    log_statuses,
    short_periods,
)
from tests.processes import running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

RECONCILE = 1.0


def short(settings: Settings) -> Settings:
    return short_periods(settings, reconcile_interval=RECONCILE)


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        yield await connection.channel()


async def depth(channel: AbstractChannel, settings: Settings) -> int:
    queue = await channel.declare_queue(QueueNames(settings.queue_prefix).streams, passive=True)
    return int(queue.declaration_result.message_count or 0)


async def drop_tokens(channel: AbstractChannel, settings: Settings) -> int:
    queue = await channel.declare_queue(QueueNames(settings.queue_prefix).streams, passive=True)
    result = await queue.purge()
    return int(result.message_count or 0)


async def reconciler_runs(database: Database) -> int:
    lease = await database.leases.find_one({"_id": "autorestart:reconcile"})
    return int(lease["runs"]) if lease else 0


async def test_pending_stream_without_token_becomes_claimable(
    settings: Settings, client: Client, database: Database, channel: AbstractChannel
) -> None:
    stream_id = await create_pending(client)
    assert await drop_tokens(channel, settings) == 1
    assert await claim_ids(client) == []  # lost: nobody can take it
    with running(worker("autorestart_worker", short(settings))):

        async def reconciling() -> bool:
            return await reconciler_runs(database) >= 1

        await wait_for(reconciling, timeout=30)
        started = time.monotonic()
        claimed: list[str] = []

        async def claimable() -> bool:
            claimed.extend(await claim_ids(client))
            return bool(claimed)

        await wait_for(claimable, timeout=20, interval=0.2)
        # the first run may come before the grace period; the next ones republish
        assert time.monotonic() - started <= 4 * RECONCILE + 1.0
        assert claimed == [stream_id]

        # claimed once: later runs publish nothing for it (it is no longer pending)
        runs = await reconciler_runs(database)

        async def two_more_runs() -> bool:
            return await reconciler_runs(database) >= runs + 2

        await wait_for(two_more_runs, timeout=20)
        assert await claim_ids(client) == []
        assert await depth(channel, settings) == 0
    assert await log_statuses(database, stream_id) == ["pending", "in_progress"]


async def test_duplicated_tokens_claim_each_stream_once(
    settings: Settings, client: Client, database: Database, channel: AbstractChannel
) -> None:
    """One token survives, one is lost: the reconciler republishes both streams' tokens
    (it cannot tell which one is missing), so the survivor's token is now doubled."""
    kept = await create_pending(client, name="kept")
    lost = await create_pending(client, name="lost")
    assert await drop_tokens(channel, settings) == 2
    doc = await database.streams.find_one({"_id": kept})
    assert doc is not None
    token = QueueToken(stream_id=kept, version=doc["version"], queued_at=doc["queued_at"])
    await channel.default_exchange.publish(
        aio_pika.Message(token.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=QueueNames(settings.queue_prefix).streams,
    )
    assert await depth(channel, settings) == 1

    with running(worker("autorestart_worker", short(settings))):

        async def republished() -> bool:
            return await depth(channel, settings) >= 3

        await wait_for(republished, timeout=60)
        claimed = await claim_ids(client, limit=10)
        assert sorted(claimed) == sorted([kept, lost])
        assert await claim_ids(client, limit=10) == []  # the duplicate was stale: dropped
        assert await depth(channel, settings) == 0
    for stream_id in (kept, lost):
        assert await log_statuses(database, stream_id) == ["pending", "in_progress"]


async def test_stale_token_does_not_hide_a_lost_one(
    settings: Settings, client: Client, database: Database, channel: AbstractChannel
) -> None:
    """The queue holds as many tokens as there are pending streams, but the token is a
    paused stream's (stale) and the pending stream's is lost. Claims drain the stale token;
    the reconciler then sees the shortfall: the pending stream is handed out, once."""
    waiting = await create_pending(client, name="waiting")
    assert await drop_tokens(channel, settings) == 1
    paused = await create_pending(client, name="paused")
    resp = await client.patch(f"/1/streams/{paused}", json={"status": "pause"})
    assert resp.status == 204, await resp.text()
    assert await depth(channel, settings) == 1
    with running(worker("autorestart_worker", short(settings))):
        claimed: list[str] = []

        async def claimable() -> bool:
            claimed.extend(await claim_ids(client))
            return bool(claimed)

        await wait_for(claimable, timeout=20, interval=0.5)
        assert claimed == [waiting]
        assert await claim_ids(client) == []
    assert await log_statuses(database, waiting) == ["pending", "in_progress"]
    assert await log_statuses(database, paused) == ["pending", "pause"]


async def test_reconciling_does_not_pile_up_queue_objects(
    settings: Settings, client: Client, database: Database
) -> None:
    """In process: each run measures the queue's depth with a declare. On a robust channel a
    declared queue is kept (to declare it again after a reconnection) unless it is declared
    with ``robust=False``: runs must not add one each, for as long as the worker lives."""
    await create_pending(client)
    broker = await open_broker(
        settings.amqp_url, settings.queue_prefix, queue_type=settings.queue_type
    )
    try:
        name = broker.names.streams
        kept = len(broker.channel._queues[name])  # type: ignore[attr-defined]
        for _ in range(5):
            await reconcile_tokens(database, broker, BrokerTokenPublisher(broker), grace=60.0)
        assert len(broker.channel._queues[name]) == kept  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_reconciler_works_in_bounded_batches(
    settings: Settings,
    client: Client,
    database: Database,
    channel: AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [await create_pending(client, name=f"b{n}") for n in range(5)]
    assert await drop_tokens(channel, settings) == 5
    monkeypatch.setattr(reconciler, "RECONCILE_BATCH", 2)
    limits: list[int] = []
    find = type(database.streams).find

    def recording_find(collection: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = find(collection, *args, **kwargs)
        original_limit = cursor.limit

        def limit(n: int) -> Any:
            limits.append(n)
            return original_limit(n)

        cursor.limit = limit
        return cursor

    monkeypatch.setattr(type(database.streams), "find", recording_find)
    broker = await open_broker(
        settings.amqp_url, settings.queue_prefix, queue_type=settings.queue_type
    )
    try:
        republished = await reconcile_tokens(database, broker, BrokerTokenPublisher(broker), 0.0)
    finally:
        await broker.close()
    assert republished == 5
    assert limits == [2, 2, 2]  # 2 + 2 + 1: never one cursor over every pending stream
    assert await depth(channel, settings) == 5
    assert sorted(await claim_ids(client)) == sorted(ids)
