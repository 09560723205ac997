"""Bounded resources (issue 10, item 4): a deleted group's queue goes with it, the broker's
cache of declared queues has a size, and slow or too many clients cannot hold the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.limits import cap_connections
from shared.core.settings import Settings
from shared.messaging.broker import open_broker
from tests.integration.factories import Client, create_group, create_stream, v1_body


async def queue_exists(amqp_url: str, name: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
    return True


async def test_a_deleted_groups_queue_is_deleted_with_it(
    client: Client, settings: Settings
) -> None:
    group_id = await create_group(client, "doomed")
    await create_stream(client, v1_body(group_name="doomed"))
    name = f"{settings.queue_prefix}.streams.group.{group_id}"
    assert await queue_exists(settings.amqp_url, name)
    resp = await client.delete(f"/1/groups/{group_id}")
    assert resp.status == 204
    assert not await queue_exists(settings.amqp_url, name)


async def test_the_declared_queue_cache_is_bounded(settings: Settings) -> None:
    broker = await open_broker(settings.amqp_url, settings.queue_prefix, queue_type="classic")
    broker.cache_size = 3
    names = [broker.names.group(f"g{n}") for n in range(6)]
    try:
        for name in names:
            await broker.ensure_queue(name)
        assert broker.declared_queues == 3
        # nor does the robust channel keep every group queue it ever declared
        robust: Any = broker.channel
        assert not set(robust._queues) & set(names)
    finally:
        for name in names:
            await broker.delete_queue(name)
        await broker.close()


@pytest.fixture
async def impatient(settings: Settings) -> AsyncIterator[Client]:
    fast = settings.model_copy(update={"header_timeout": 1.0, "body_timeout": 1.0})
    async with TestClient(TestServer(create_app(fast), host="127.0.0.1")) as test_client:
        assert test_client.server.runner is not None
        server = test_client.server.runner.server
        assert server is not None
        cap_connections(server, 20)
        yield test_client


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    return True


async def test_slow_clients_are_closed(impatient: Client) -> None:
    port = impatient.port
    slow = []
    for _ in range(50):  # slowloris: request heads that never end
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
        await writer.drain()
        slow.append((reader, writer))
    # beyond the cap of 20, connections are closed at once; the others after the header timeout
    results = await asyncio.gather(*(closed_within(r, 5) for r, _ in slow))
    assert all(results)
    # a body that never completes: an error, not a connection held
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /1/groups HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    for _, w in [*slow, (reader, writer)]:
        w.close()
    # and the gateway still serves
    resp = await impatient.get("/version")
    assert resp.status == 200
