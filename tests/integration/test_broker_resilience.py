"""The queue worker resumes consuming after its broker connection is cut, under load.

aio-pika has known cases where a consumer does not come back after a reconnect; this test
cuts every connection of the worker (through a TCP proxy in front of RabbitMQ) while
agents keep sending feedback, and checks that feedback is applied again afterwards, that
the worker reports itself healthy, and that no acknowledged feedback was lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.mongo import Database
from tests.tcp_proxy import TcpProxy

Client = TestClient[Any, Any]

BODY = {
    "account_id": "557d54ec-29ad-4f3c-93b4-c9092ef12515",
    "data": {"type": "tcp", "reference": "rtsp://camera"},
    "event_handler": {
        "bestshot_handler": {"handler_id": "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"},
        "authorization": {"token": "t"},
    },
}


async def claimed_streams(client: Client, count: int) -> list[str]:
    for _ in range(count):
        resp = await client.post("/1/streams", json=BODY)
        assert resp.status == 201
    resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": count})
    streams = (await resp.json())["streams"]
    assert len(streams) == count
    return [s["stream_id"] for s in streams]


async def feedback_consumers(settings: Settings) -> int:
    """Consumers of the feedback queue, seen from a separate connection."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            QueueNames(settings.queue_prefix).feedback, passive=True
        )
        return int(queue.declaration_result.consumer_count or 0)


@pytest.mark.slow
async def test_worker_consumes_again_after_connection_cut(
    settings: Settings, database: Database
) -> None:
    url = urlsplit(settings.amqp_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5672).start()
    proxied = settings.amqp_url.replace(
        f"{url.hostname}:{url.port or 5672}", f"127.0.0.1:{proxy.port}"
    )
    sep = "&" if "?" in proxied else "?"
    worker_settings = settings.model_copy(
        update={"amqp_url": f"{proxied}{sep}reconnect_interval=0.5"}
    )
    worker = FeedbackWorker(worker_settings)
    await worker.start()
    gateway_settings = settings.model_copy(update={"feedback_timeout": 3.0})
    figures = {"sent": 0, "ok": 0, "errors": 0, "cuts": 0}
    acknowledged: list[tuple[str, int]] = []  # (stream id, sequence) answered "modified"
    try:
        async with TestClient(TestServer(create_app(gateway_settings))) as client:
            ids = await claimed_streams(client, 5)

            async def agent(stream_id: str, until: float) -> None:
                seq = 0
                while time.monotonic() < until:
                    seq += 1
                    figures["sent"] += 1
                    item = {
                        "stream_id": stream_id,
                        "status": "in_progress",
                        "version": 1,
                        "error": f"seq-{seq}",
                    }
                    resp = await client.post(
                        "/1/streams/processing/feedback", json={"streams": [item]}
                    )
                    if resp.status == 200:
                        body = await resp.json()
                        assert [m["stream_id"] for m in body["streams"]["modified"]] == [stream_id]
                        figures["ok"] += 1
                        acknowledged.append((stream_id, seq))
                    else:
                        assert resp.status in (503, 504)
                        figures["errors"] += 1
                    await asyncio.sleep(0.05)

            until = time.monotonic() + 12
            load = asyncio.gather(*(agent(sid, until) for sid in ids))
            await asyncio.sleep(3)
            assert proxy.cut() > 0
            figures["cuts"] += 1
            await asyncio.sleep(3)
            proxy.cut()
            figures["cuts"] += 1
            cut_at = time.monotonic()
            ok_before = figures["ok"]
            await load
            assert figures["ok"] > ok_before, ("no feedback applied after the cut", figures)
            recovered = time.monotonic() - cut_at
            assert worker.healthy()
            assert await feedback_consumers(settings) >= 1
        # every acknowledged report is in the stream log, exactly once
        for stream_id, seq in acknowledged:
            rows = await database.stream_logs.count_documents(
                {"stream_id": stream_id, "error": f"seq-{seq}"}
            )
            assert rows == 1, (stream_id, seq, rows)
        print(f"\nbroker cut under load: {figures}, recovered within {recovered:.1f} s")
    finally:
        await worker.stop(5)
        await proxy.close()
