"""The hot path: claims per second and feedback items per second, beside raw costs.

- claims/s with 1, 4 and 16 concurrent agents (each claim request takes up to 10 streams),
  through the gateway (HTTP -> RabbitMQ token -> MongoDB compare-and-set -> log row);
- feedback items/s with batches of 1, 10 and 100 (4 concurrent agents), through the
  gateway and a queue worker (HTTP -> RabbitMQ request/reply -> MongoDB bulk write);
- each beside the raw cost of the same MongoDB and RabbitMQ operations done directly,
  as a ratio (gateway time / raw time; 1.0 would be free).

    python -m bench.bench_processing [--streams 2000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import aio_pika
from pymongo import UpdateOne

from bench.env import bench_settings, gateway_client, mongo_uri
from queue_worker.worker import FeedbackWorker
from shared.broker import open_broker
from shared.models import StreamCreateV1
from shared.mongo import Database, open_database
from shared.settings import Settings
from shared.streams.outbox import Outbox, log_row, now_utc
from shared.streams.service import StreamService
from shared.tokens import BrokerTokenPublisher, QueueToken

BODY = StreamCreateV1.model_validate(
    {
        "account_id": "557d54ec-29ad-4f3c-93b4-c9092ef12515",
        "data": {"type": "tcp", "reference": "rtsp://camera"},
        "event_handler": {
            "bestshot_handler": {"handler_id": "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"},
            "authorization": {"token": "t"},
        },
    }
).model_dump(mode="json")


async def create_pending(settings: Settings, count: int) -> list[str]:
    assert settings.mongo_uri
    database = await open_database(settings.mongo_uri, settings.db_name)
    broker = await open_broker(settings.amqp_url, settings.queue_prefix)
    service = StreamService(database, Outbox(database, BrokerTokenPublisher(broker)))
    ids: list[str] = []
    for start in range(0, count, 50):
        docs = await asyncio.gather(
            *(service.create(1, BODY) for _ in range(min(50, count - start)))
        )
        ids += [d["_id"] for d in docs]
    await broker.close()
    await database.close()
    return ids


async def gateway_claims(settings: Settings, agents: int, streams: int) -> float:
    await create_pending(settings, streams)
    claimed = 0
    async with gateway_client(settings) as client:

        async def agent() -> None:
            nonlocal claimed
            while True:
                resp = await client.post(
                    "/1/streams/processing/queue", json={"filters": {}, "limit": 10}
                )
                got = len((await resp.json())["streams"])
                if not got:
                    return
                claimed += got

        started = time.perf_counter()
        await asyncio.gather(*(agent() for _ in range(agents)))
        elapsed = time.perf_counter() - started
    assert claimed == streams, (claimed, streams)
    return claimed / elapsed


async def raw_claims(settings: Settings, agents: int, streams: int) -> float:
    """basic.get + find_one + update_one + insert_one + ack per stream, directly."""
    await create_pending(settings, streams)
    assert settings.mongo_uri
    database = await open_database(settings.mongo_uri, settings.db_name)
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(
        f"{settings.queue_prefix}.streams",
        durable=True,
        arguments={"x-queue-type": settings.queue_type},
    )
    claimed = 0

    async def agent() -> None:
        nonlocal claimed
        while True:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return
            token = QueueToken.decode(message.body)
            doc = await database.streams.find_one(token.cas_filter(), {"outbox": 0})
            if doc is not None:
                await database.streams.update_one(
                    token.cas_filter(), {"$set": {"status": "in_progress"}}
                )
                await database.stream_logs.insert_one(
                    log_row(doc, "in_progress", doc["version"], now_utc())
                )
                claimed += 1
            await message.ack()

    started = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(agents)))
    elapsed = time.perf_counter() - started
    await connection.close()
    await database.close()
    return claimed / elapsed


async def in_progress(settings: Settings, count: int) -> list[str]:
    ids = await create_pending(settings, count)
    assert settings.mongo_uri
    database = await open_database(settings.mongo_uri, settings.db_name)
    await database.streams.update_many(
        {}, {"$set": {"status": "in_progress", "claim": {"feedback_ids": []}}}
    )
    await database.close()
    return ids


def items(ids: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "stream_id": sid,
            "status": "in_progress",
            "version": 1,
            "error": None,
            "video_info": {
                "width": 1920,
                "height": 1080,
                "frame_rate": 25,
                "bit_rate": 4000000,
                "gop_size": 50,
                "start_time": "2026-11-28T08:00:00.000Z",
                "progress": 0.5,
            },
        }
        for sid in ids
    ]


async def gateway_feedback(settings: Settings, batch: int, seconds: float) -> float:
    ids = await in_progress(settings, max(batch * 4, 40))
    worker = FeedbackWorker(settings)
    await worker.start()
    sent = 0
    async with gateway_client(settings) as client:

        async def agent(mine: list[str]) -> None:
            nonlocal sent
            until = time.perf_counter() + seconds
            while time.perf_counter() < until:
                resp = await client.post(
                    "/1/streams/processing/feedback", json={"streams": items(mine)}
                )
                body = await resp.json()
                assert len(body["streams"]["modified"]) == len(mine), body
                sent += len(mine)

        started = time.perf_counter()
        await asyncio.gather(*(agent(ids[i * batch : (i + 1) * batch]) for i in range(4)))
        elapsed = time.perf_counter() - started
    await worker.stop(5)
    return sent / elapsed


async def raw_feedback(settings: Settings, batch: int, seconds: float) -> float:
    """The same work directly: publish the batch (confirmed) and take it back, read the
    streams, one bulk write, one insert of log rows, publish and take back a reply."""
    ids = await in_progress(settings, max(batch * 4, 40))
    assert settings.mongo_uri
    database: Database = await open_database(settings.mongo_uri, settings.db_name)
    connection = await aio_pika.connect(settings.amqp_url)
    sent = 0

    async def agent(mine: list[str]) -> None:
        nonlocal sent
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            body = json.dumps({"streams": items(mine)}).encode()
            await channel.default_exchange.publish(aio_pika.Message(body), queue.name)
            message = await queue.get(no_ack=True)
            batch_items = json.loads(message.body)["streams"]
            docs = await database.streams.find({"_id": {"$in": mine}}).to_list()
            now = now_utc()
            await database.streams.bulk_write(
                [
                    UpdateOne(
                        {"_id": i["stream_id"], "status": "in_progress", "version": 1},
                        {"$set": {"video_info": i["video_info"], "claim.last_feedback_at": now}},
                    )
                    for i in batch_items
                ],
                ordered=True,
            )
            await database.stream_logs.insert_many(
                [log_row(d, "in_progress", 1, now, row_id=str(uuid.uuid4())) for d in docs]
            )
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), queue.name)
            await queue.get(no_ack=True)
            sent += len(mine)

    started = time.perf_counter()
    await asyncio.gather(*(agent(ids[i * batch : (i + 1) * batch]) for i in range(4)))
    elapsed = time.perf_counter() - started
    await connection.close()
    await database.close()
    return sent / elapsed


async def cleanup(uri: str, settings: Settings) -> None:
    database = await open_database(uri, settings.db_name, ensure_indexes=False)
    await database.client.drop_database(settings.db_name)
    await database.close()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in ("streams", "feedback"):
            await channel.queue_delete(f"{settings.queue_prefix}.{name}")


async def run(uri: str, fn: Any, *args: Any) -> float:
    settings = bench_settings(uri)
    try:
        return float(await fn(settings, *args))
    finally:
        await cleanup(uri, settings)


async def main(streams: int, seconds: float) -> None:
    with mongo_uri() as uri:
        print(f"{'claims/s':<28}{'gateway':>10}{'raw':>10}{'raw/gw':>9}")
        for agents in (1, 4, 16):
            gw = await run(uri, gateway_claims, agents, streams)
            raw = await run(uri, raw_claims, agents, streams)
            print(
                f"{f'{agents} agents, {streams} streams':<28}{gw:>10.0f}{raw:>10.0f}"
                f"{raw / gw:>8.2f}x"
            )
        print(f"{'feedback items/s':<28}{'gateway':>10}{'raw':>10}{'raw/gw':>9}")
        for batch in (1, 10, 100):
            gw = await run(uri, gateway_feedback, batch, seconds)
            raw = await run(uri, raw_feedback, batch, seconds)
            print(f"{f'batches of {batch}, 4 agents':<28}{gw:>10.0f}{raw:>10.0f}{raw / gw:>8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.seconds))
