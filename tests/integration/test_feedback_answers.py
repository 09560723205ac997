"""Every feedback message gets an answer, and overload is said at once.

- messages no worker can decode (bad JSON, JSON nested 100,000 deep, wrong fields) are
  answered and dead-lettered; feedback keeps working behind them;
- when answers take most of the gateway's timeout and batches are in flight, a new batch is
  refused at once with a 503, ``Retry-After`` and a LUNA error body, not a 504 later.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika

from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from tests.integration.factories import Client, claim_ids, create_stream, queue_depth, v1_body
from tests.waits import wait_for

UNDECODABLE = [
    b"not json",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"streams": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"{}",
    b'{"streams": "x"}',
    b'{"streams": [{"stream_id": 1}]}',
    b"\xff\xfe\x00",
    b"",
    b"null",
    b'{"streams": [{"stream_id": "00000000-0000-4000-8000-000000000000"}]}',
]


async def publish_raw(settings: Settings, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for n, body in enumerate(bodies):
            await channel.default_exchange.publish(
                aio_pika.Message(body, message_id=f"poison-{n}"),
                QueueNames(settings.queue_prefix).feedback,
            )


def report(stream_id: str) -> dict[str, object]:
    return {"stream_id": stream_id, "version": 1, "status": "in_progress", "error": None}


async def test_undecodable_feedback_is_dead_lettered_and_feedback_goes_on(
    client: Client, settings: Settings, queue_worker: FeedbackWorker
) -> None:
    names = QueueNames(settings.queue_prefix)
    stream_id = await create_stream(client, v1_body(name="cam"))
    assert await claim_ids(client, {}, 1) == [stream_id]
    await publish_raw(settings, UNDECODABLE)

    async def all_dead() -> bool:
        return await queue_depth(settings, names.feedback_dead) == len(UNDECODABLE)

    await wait_for(all_dead, timeout=30)
    assert await queue_depth(settings, names.feedback) == 0
    assert queue_worker.rejected_messages == len(UNDECODABLE)
    # more than the prefetch of them held nothing: feedback is answered at once
    resp = await client.post(
        "/1/streams/processing/feedback", json={"streams": [report(stream_id)]}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["streams"]["modified"] == [
        {"stream_id": stream_id, "status": "in_progress", "version": 1}
    ]
    assert queue_worker.healthy()
    assert queue_worker.stalled_for() == 0.0  # nothing stuck in hand


async def test_overload_is_answered_at_once(client: Client, settings: Settings) -> None:
    """No queue worker runs: the first batch waits the whole timeout (5 s in tests). Then,
    with a batch in flight, the next one is refused at once."""
    stream_id = await create_stream(client, v1_body(name="cam"))
    body = {"streams": [report(stream_id)]}
    resp = await client.post("/1/streams/processing/feedback", json=body)
    assert resp.status == 504
    names = QueueNames(settings.queue_prefix)

    async def expired() -> bool:  # RabbitMQ drops the timed-out batch (its TTL) a bit later
        return await queue_depth(settings, names.feedback) == 0

    await wait_for(expired, timeout=10, interval=0.1)  # so the next batch is let through
    in_flight = asyncio.create_task(client.post("/1/streams/processing/feedback", json=body))

    async def published() -> bool:  # the batch in flight waits in the queue
        return await queue_depth(settings, names.feedback) == 1

    await wait_for(published, timeout=5, interval=0.05, what="the batch in flight published")
    started = time.monotonic()
    resp = await client.post("/1/streams/processing/feedback", json=body)
    answered_in = time.monotonic() - started
    answer = await resp.json()
    assert resp.status == 503, answer
    assert answer["error_code"] == 4
    assert set(answer) == {"error_code", "desc", "detail", "link"}
    assert int(resp.headers["Retry-After"]) >= 1
    assert answered_in < settings.feedback_timeout / 2
    assert (await in_flight).status == 504
    metrics = await (await client.get("/metrics")).text()
    assert "feedback_estimated_wait_seconds" in metrics
    assert "feedback_backlog" in metrics
