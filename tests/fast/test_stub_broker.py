"""The in-memory broker keeps RabbitMQ's promises the gateway relies on (tests/stub_broker.py):
a double that answered whatever the gateway wanted would let the fast tier pass for code that
fails against RabbitMQ."""

from __future__ import annotations

import asyncio
import time

import pytest
from aio_pika.exceptions import MessageProcessError
from aiormq.exceptions import ChannelInvalidStateError

from shared.core.clock import now_utc
from shared.core.errors import BrokerUnavailable
from shared.domain.tokens import QueueToken
from shared.messaging.publisher import BrokerTokenPublisher
from shared.messaging.token_buffer import TokenBuffer
from tests.stub_broker import StubBroker
from tests.stub_rabbitmq import StubMessage, StubServer


async def received(queue: asyncio.Queue[StubMessage], count: int) -> list[StubMessage]:
    return [await asyncio.wait_for(queue.get(), 1) for _ in range(count)]


async def consumer(
    broker: StubBroker, name: str, prefetch: int
) -> tuple[asyncio.Queue[StubMessage], object]:
    """A consumer of ``name`` on a channel of its own; what it is delivered, in order."""
    channel = await broker.open_channel(prefetch)
    queue = await channel.declare_queue(name, durable=True, arguments=broker.queue_arguments)
    deliveries: asyncio.Queue[StubMessage] = asyncio.Queue()

    async def on_message(message: StubMessage) -> None:
        deliveries.put_nowait(message)

    await queue.consume(on_message)
    return deliveries, channel


async def test_the_topology_is_declared_and_unroutable_publishes_raise() -> None:
    broker = await StubBroker.open("t")
    assert sorted(broker.server.queues) == ["t.feedback", "t.feedback.dead", "t.streams"]
    await broker.publish("t.streams", b"one")
    assert broker.server.bodies("t.streams") == [b"one"]
    with pytest.raises(BrokerUnavailable, match="NO_ROUTE"):
        await broker.publish("t.streams.group.nobody", b"lost")
    await broker.close()
    assert not await broker.is_open()
    with pytest.raises(BrokerUnavailable):
        await broker.publish("t.streams", b"after close")


async def test_tokens_go_to_every_queue_and_a_dropped_group_takes_its_own() -> None:
    broker = await StubBroker.open("t")
    publisher = BrokerTokenPublisher(broker)  # type: ignore[arg-type]
    token = QueueToken(
        stream_id="00000000-0000-4000-a000-000000000001", version=3, queued_at=now_utc()
    )
    await publisher.publish_token(token, ["g1", "g2"])
    for name in ("t.streams", "t.streams.group.g1", "t.streams.group.g2"):
        assert [QueueToken.decode(body) for body in broker.server.bodies(name)] == [token]
    await publisher.drop_group_queue("g1")
    assert "t.streams.group.g1" not in broker.server.queues
    assert await broker.queue_depth("t.streams.group.g2") == (1, 0)


async def test_redeclaring_with_other_arguments_is_refused_and_closes_the_channel() -> None:
    broker = await StubBroker.open("t")
    channel = await broker.open_channel(1)
    with pytest.raises(Exception, match="PRECONDITION_FAILED"):
        await channel.declare_queue(
            "t.streams", durable=True, arguments={"x-queue-type": "classic"}
        )
    assert channel.is_closed
    passive = await broker.open_channel(1)
    with pytest.raises(Exception, match="NOT_FOUND"):
        await passive.declare_queue("t.missing", passive=True)
    assert passive.is_closed


async def test_prefetch_bounds_the_unacknowledged_and_acks_make_room() -> None:
    broker = await StubBroker.open("t")
    for n in range(5):
        await broker.publish("t.streams", str(n).encode())
    deliveries, _ = await consumer(broker, "t.streams", prefetch=2)
    first = await received(deliveries, 2)
    await asyncio.sleep(0.01)
    assert deliveries.empty()  # two unacknowledged: no third
    assert await broker.queue_depth("t.streams") == (3, 1)
    await first[0].ack()
    (third,) = await received(deliveries, 1)
    assert [m.body for m in [*first, third]] == [b"0", b"1", b"2"]
    with pytest.raises(MessageProcessError):
        await first[0].ack()  # settled twice


async def test_consumers_take_turns() -> None:
    broker = await StubBroker.open("t")
    one, _ = await consumer(broker, "t.streams", prefetch=10)
    two, _ = await consumer(broker, "t.streams", prefetch=10)
    for n in range(4):
        await broker.publish("t.streams", str(n).encode())
    assert [m.body for m in await received(one, 2)] == [b"0", b"2"]
    assert [m.body for m in await received(two, 2)] == [b"1", b"3"]


async def test_nack_requeues_at_the_head_and_reject_dead_letters() -> None:
    broker = await StubBroker.open("t")
    await broker.publish("t.streams", b"a")
    await broker.publish("t.streams", b"b")
    deliveries, _ = await consumer(broker, "t.streams", prefetch=1)
    (a,) = await received(deliveries, 1)
    assert not a.redelivered
    await a.nack(requeue=True)
    (again,) = await received(deliveries, 1)
    assert (again.body, again.redelivered) == (b"a", True)
    await again.ack()
    (b,) = await received(deliveries, 1)
    await b.reject(requeue=False)  # t.streams has no dead-letter queue: dropped
    assert broker.server.depth("t.streams") == 0

    await broker.publish("t.feedback", b"batch", correlation_id="c1")
    feedback = await broker.open_channel(1)
    queue = await feedback.declare_queue(
        "t.feedback",
        durable=True,
        arguments={**broker.queue_arguments, **broker.feedback_arguments},
    )
    got: asyncio.Queue[StubMessage] = asyncio.Queue()
    await queue.consume(got.put)
    (batch,) = await received(got, 1)
    assert batch.correlation_id == "c1"
    await batch.reject(requeue=False)
    assert broker.server.bodies("t.feedback.dead") == [b"batch"]


async def test_a_closed_channel_gives_its_messages_back() -> None:
    broker = await StubBroker.open("t")
    for n in range(3):
        await broker.publish("t.streams", str(n).encode())
    deliveries, channel = await consumer(broker, "t.streams", prefetch=2)
    held = await received(deliveries, 2)
    await channel.close()  # type: ignore[attr-defined]
    assert broker.server.bodies("t.streams") == [b"0", b"1", b"2"]
    with pytest.raises(ChannelInvalidStateError):
        held[0].channel  # noqa: B018 - aio-pika raises for a closed channel's message
    with pytest.raises(ChannelInvalidStateError):
        await held[0].ack()
    again, _ = await consumer(broker, "t.streams", prefetch=5)
    assert [(m.body, m.redelivered) for m in await received(again, 3)] == [
        (b"0", True),
        (b"1", True),
        (b"2", False),
    ]


async def test_expired_messages_are_not_delivered() -> None:
    broker = await StubBroker.open("t")
    await broker.publish("t.feedback", b"late", expiration=0.01)
    await asyncio.sleep(0.02)
    assert await broker.queue_depth("t.feedback") == (0, 0)
    assert broker.server.bodies("t.feedback.dead") == [b"late"]


async def test_the_token_buffer_takes_gives_back_and_releases() -> None:
    """The gateway's consumer of token queues, as claims use it."""
    broker = await StubBroker.open("t")
    for n in range(3):
        await broker.publish("t.streams", str(n).encode())
    buffer = TokenBuffer(broker, "t.streams", prefetch=10, hold=0.05)  # type: ignore[arg-type]
    taken = await buffer.take(2)
    assert [m.body for m in taken] == [b"0", b"1"]
    await taken[0].ack()
    buffer.give_back(taken[1:])
    assert broker.server.depth("t.streams") == 0  # all delivered, two unacknowledged
    await asyncio.sleep(0.06)
    assert await buffer.release(time.monotonic()) == 2  # unused for longer than hold
    assert sorted(broker.server.bodies("t.streams")) == [b"1", b"2"]
    await buffer.close()


async def test_request_and_reply_through_an_exclusive_reply_queue() -> None:
    """Request/reply as the gateway's feedback client does it (``shared.messaging.rpc``):
    an exclusive, auto-deleted reply queue consumed without acks, answered by a consumer that
    stands where a queue worker would."""
    server = StubServer()
    gateway, worker = await StubBroker.open("t", server), await StubBroker.open("t", server)
    reply_queue = await gateway.channel.declare_queue("t.reply.1", exclusive=True, auto_delete=True)
    replies: asyncio.Queue[StubMessage] = asyncio.Queue()
    await reply_queue.consume(replies.put, no_ack=True)

    async def answer(message: StubMessage) -> None:
        await worker.publish(message.reply_to, b"done", correlation_id=message.correlation_id)
        await message.ack()

    channel = await worker.open_channel(1)
    queue = await channel.declare_queue(
        "t.feedback",
        durable=True,
        arguments={**worker.queue_arguments, **worker.feedback_arguments},
    )
    await queue.consume(answer)
    await gateway.publish("t.feedback", b"batch", correlation_id="c1", reply_to="t.reply.1")
    (reply,) = await received(replies, 1)
    assert (reply.body, reply.correlation_id) == (b"done", "c1")
    with pytest.raises(TypeError):
        await reply.ack()  # consumed without acks
    assert await gateway.queue_depth("t.feedback") == (0, 1)
    await gateway.close()  # its exclusive reply queue goes with its connection
    assert "t.reply.1" not in server.queues
