"""An in-memory RabbitMQ for the gateway, as dramatiq's ``StubBroker`` is for its actors.

:class:`StubBroker` stands where :class:`shared.messaging.broker.Broker` stands and offers
what the gateway calls on it (``publish``, ``ensure_queue``, ``delete_queue``,
``queue_depth``, ``open_channel``, ``is_open``, ``close``, its ``channel`` and
``connection``), over queues held in this process by a :class:`StubServer`. No network, no
canned answers: a token published is in its queue until a consumer takes it.

The semantics the gateway relies on, as RabbitMQ has them:

- queues by name through the default exchange; a publish no queue takes raises (every
  publish is mandatory), as :class:`~shared.core.errors.BrokerUnavailable`, the only error
  the real ``Broker`` lets out;
- declares are idempotent, a re-declare with other arguments is refused
  (``PRECONDITION_FAILED``) and a passive declare of a missing queue too (``NOT_FOUND``),
  each closing its channel;
- consumers are served in turn, each at most its channel's prefetch of unacknowledged
  messages (0: no bound), deliveries arriving as tasks, as aio-pika's callbacks do;
- ``ack``, ``nack(requeue=True)`` (back at the head, marked redelivered),
  ``reject``/``nack`` without requeue (dead-lettered through ``x-dead-letter-routing-key``
  when the queue has one, else dropped); settling a message twice raises, as aio-pika does;
- a closed channel gives its unacknowledged messages back to their queues and ends its
  consumers; its messages' ``channel`` then raises ``ChannelInvalidStateError``;
- ``auto_delete`` queues go with their last consumer, ``exclusive`` ones with their
  connection;
- per-message ``expiration`` and ``x-message-ttl``: a message expired at a queue's head is
  dead-lettered or dropped, not delivered; ``x-max-length`` drops (dead-letters) the oldest.

Not modelled: quorum queues' ``x-delivery-limit``, persistence across restarts, clusters and
their nodes, flow control, exchanges other than the default one.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.exceptions import MessageProcessError
from aiormq.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from shared.core.errors import BrokerUnavailable
from shared.messaging.broker import QueueNames, broker_errors

Callback = Callable[["StubMessage"], Awaitable[Any]]


class Unroutable(AMQPError):
    """A mandatory publish no queue took: RabbitMQ returns it (aio-pika's ``PublishError``)."""

    reason = "the message was returned: %s"


@dataclass(slots=True)
class Envelope:
    """A message as it waits in a queue."""

    body: bytes
    properties: dict[str, Any]
    expires_at: float | None = None
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class DeclareOk:
    """What ``queue.declare-ok`` says (aiormq's ``Queue.DeclareOk``)."""

    queue: str
    message_count: int
    consumer_count: int


@dataclass(slots=True, eq=False)
class Consumer:
    tag: str
    channel: StubChannel
    callback: Callback
    no_ack: bool
    unacked: int = 0

    def has_room(self) -> bool:
        prefetch = self.channel.prefetch
        return self.no_ack or prefetch == 0 or self.unacked < prefetch


@dataclass(slots=True, eq=False)
class QueueState:
    name: str
    arguments: dict[str, Any]
    durable: bool
    auto_delete: bool
    owner: StubConnection | None  # exclusive to this connection
    ready: deque[Envelope] = field(default_factory=deque)
    consumers: list[Consumer] = field(default_factory=list)
    turn: int = 0  # round robin among the consumers

    def enqueue(self, envelope: Envelope, *, front: bool = False) -> None:
        ttl = self.arguments.get("x-message-ttl")
        if ttl is not None and not front:
            expiry = time.monotonic() + int(ttl) / 1000
            if envelope.expires_at is None or expiry < envelope.expires_at:
                envelope.expires_at = expiry
        if front:
            self.ready.appendleft(envelope)
        else:
            self.ready.append(envelope)


class StubServer:
    """The queues: what RabbitMQ holds, shared by every connection to it."""

    def __init__(self) -> None:
        self.queues: dict[str, QueueState] = {}
        self._tags = itertools.count(1)
        self._scheduled: set[str] = set()
        self._deliveries: set[asyncio.Task[Any]] = set()

    def connect(self) -> StubConnection:
        return StubConnection(self)

    # --- what a test may ask ----------------------------------------------------------

    def bodies(self, name: str) -> list[bytes]:
        """The bodies ready in queue ``name``, oldest first (delivered ones not included)."""
        return [envelope.body for envelope in self.queues[name].ready]

    def depth(self, name: str) -> int:
        queue = self.queues[name]
        self._expire(queue)
        return len(queue.ready)

    # --- topology ---------------------------------------------------------------------

    def declare(
        self,
        name: str,
        *,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, Any],
        passive: bool,
        connection: StubConnection,
    ) -> QueueState:
        queue = self.queues.get(name)
        if passive:
            if queue is None:
                raise ChannelNotFoundEntity(f"NOT_FOUND - no queue '{name}'")
            return queue
        if queue is None:
            queue = self.queues[name] = QueueState(
                name, dict(arguments), durable, auto_delete, connection if exclusive else None
            )
            return queue
        if queue.arguments != arguments or queue.durable != durable:
            raise ChannelPreconditionFailed(
                f"PRECONDITION_FAILED - inequivalent arguments for queue '{name}': "
                f"{queue.arguments} {queue.durable=} declared, {arguments} {durable=} asked"
            )
        return queue

    def delete(self, name: str) -> int:
        """Delete a queue (its ready messages with it); how many messages it held."""
        queue = self.queues.pop(name, None)
        if queue is None:
            return 0
        for consumer in queue.consumers:
            consumer.channel.consumers.pop(consumer.tag, None)
        return len(queue.ready)

    # --- messages ---------------------------------------------------------------------

    def publish(self, routing_key: str, envelope: Envelope) -> None:
        queue = self.queues.get(routing_key)
        if queue is None:
            # mandatory: the message comes back instead of vanishing (aio-pika's
            # on_return_raises turns it into this error)
            raise Unroutable(f"312 NO_ROUTE - no queue '{routing_key}'")
        queue.enqueue(envelope)
        self._bound(queue)
        self.schedule(queue.name)

    def _bound(self, queue: QueueState) -> None:
        limit = queue.arguments.get("x-max-length")
        while limit is not None and len(queue.ready) > int(limit):
            self.dead_letter(queue, queue.ready.popleft())

    def dead_letter(self, queue: QueueState, envelope: Envelope) -> None:
        """Where a rejected or expired message goes: the queue's dead-letter queue, if any."""
        if queue.arguments.get("x-dead-letter-exchange") != "":
            return
        target = self.queues.get(queue.arguments.get("x-dead-letter-routing-key", queue.name))
        if target is None or target is queue:
            return
        properties = {**envelope.properties, "expiration": None}  # RabbitMQ drops it
        target.enqueue(Envelope(envelope.body, properties))
        self._bound(target)
        self.schedule(target.name)

    def _expire(self, queue: QueueState) -> None:
        """Expired messages leave from the head of a queue, as in RabbitMQ."""
        now = time.monotonic()
        while queue.ready and (expiry := queue.ready[0].expires_at) is not None and expiry <= now:
            self.dead_letter(queue, queue.ready.popleft())

    def schedule(self, name: str) -> None:
        """Deliver what queue ``name`` can, soon (never inside the caller's call)."""
        if name not in self._scheduled:
            self._scheduled.add(name)
            asyncio.get_running_loop().call_soon(self._dispatch, name)

    def _dispatch(self, name: str) -> None:
        self._scheduled.discard(name)
        queue = self.queues.get(name)
        if queue is None:
            return
        self._expire(queue)
        while queue.ready:
            consumer = self._next_consumer(queue)
            if consumer is None:
                return
            envelope = queue.ready.popleft()
            message = StubMessage(
                envelope, queue, consumer.channel, consumer, next(self._tags), consumer.no_ack
            )
            if not consumer.no_ack:
                consumer.unacked += 1
                consumer.channel.unacked[message.delivery_tag] = message
            task = asyncio.create_task(consumer.callback(message))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            self._expire(queue)

    def _next_consumer(self, queue: QueueState) -> Consumer | None:
        count = len(queue.consumers)
        for step in range(count):
            consumer = queue.consumers[(queue.turn + step) % count]
            if consumer.has_room():
                queue.turn = (queue.turn + step + 1) % count
                return consumer
        return None


class StubMessage:
    """A delivered message, as aio-pika's ``IncomingMessage`` is to the gateway."""

    def __init__(
        self,
        envelope: Envelope,
        queue: QueueState,
        channel: StubChannel,
        consumer: Consumer,
        delivery_tag: int,
        no_ack: bool,
    ) -> None:
        self.envelope = envelope
        self.body = envelope.body
        self.redelivered = envelope.redelivered
        self.delivery_tag = delivery_tag
        self.routing_key = queue.name
        self._queue = queue
        self._channel = channel
        self._consumer = consumer
        self._no_ack = no_ack
        self.processed = no_ack

    def __getattr__(self, name: str) -> Any:
        """The properties it was published with: ``correlation_id``, ``reply_to``..."""
        try:
            return self.envelope.properties[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def channel(self) -> StubChannel:
        if self._channel.is_closed:
            raise ChannelInvalidStateError("the channel is closed")
        return self._channel

    def _settle(self) -> None:
        if self._no_ack:
            raise TypeError('Can\'t ack message with "no_ack" flag')
        if self.processed:
            raise MessageProcessError("Message already processed", self)
        channel = self.channel  # a closed channel's messages went back to their queue
        channel.unacked.pop(self.delivery_tag, None)
        self._consumer.unacked -= 1
        self.processed = True
        channel.server.schedule(self._queue.name)

    async def ack(self, multiple: bool = False) -> None:
        self._settle()

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self._settle()
        self._back(requeue)

    async def reject(self, requeue: bool = False) -> None:
        self._settle()
        self._back(requeue)

    def _back(self, requeue: bool) -> None:
        server = self._channel.server
        if server.queues.get(self._queue.name) is not self._queue:
            return  # its queue was deleted meanwhile
        if requeue:
            self.envelope.redelivered = True
            self._queue.enqueue(self.envelope, front=True)
            server.schedule(self._queue.name)
        else:
            server.dead_letter(self._queue, self.envelope)


class StubQueue:
    """A declared queue, as aio-pika's ``Queue`` is to the code that consumes it."""

    def __init__(self, channel: StubChannel, state: QueueState) -> None:
        self.channel = channel
        self.name = state.name
        self._state = state
        self.declaration_result = DeclareOk(state.name, len(state.ready), len(state.consumers))

    async def consume(self, callback: Callback, no_ack: bool = False, **_: Any) -> str:
        channel = self.channel._open()
        server = channel.server
        if server.queues.get(self.name) is not self._state:
            raise ChannelNotFoundEntity(f"NOT_FOUND - no queue '{self.name}'")
        tag = f"ctag-{next(server._tags)}"
        consumer = Consumer(tag, channel, callback, no_ack)
        self._state.consumers.append(consumer)
        channel.consumers[tag] = consumer
        server.schedule(self.name)
        return tag

    async def cancel(self, consumer_tag: str, **_: Any) -> None:
        self.channel._cancel(consumer_tag)


class StubChannel:
    """A channel: its consumers, its unacknowledged deliveries, its prefetch."""

    def __init__(self, connection: StubConnection) -> None:
        self.connection = connection
        self.server = connection.server
        self.prefetch = 0
        self.consumers: dict[str, Consumer] = {}
        self.unacked: dict[int, StubMessage] = {}
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed or self.connection.is_closed

    def _open(self) -> StubChannel:
        if self.is_closed:
            raise ChannelInvalidStateError("the channel is closed")
        return self

    async def set_qos(self, prefetch_count: int = 0, **_: Any) -> None:
        self._open().prefetch = prefetch_count

    async def declare_queue(
        self,
        name: str,
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        **_: Any,
    ) -> StubQueue:
        state = self._declare(name, durable, exclusive, auto_delete, arguments, passive)
        return StubQueue(self, state)

    def _declare(
        self,
        name: str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict[str, Any] | None,
        passive: bool,
    ) -> QueueState:
        self._open()
        try:
            return self.server.declare(
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=arguments or {},
                passive=passive,
                connection=self.connection,
            )
        except (ChannelNotFoundEntity, ChannelPreconditionFailed):
            self._shut()  # RabbitMQ closes the channel that asked
            raise

    async def get_underlay_channel(self) -> StubChannel:
        """aiormq's channel under aio-pika's: here the same object."""
        return self

    async def queue_declare(
        self,
        queue: str,
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        **_: Any,
    ) -> DeclareOk:
        state = self._declare(queue, durable, exclusive, auto_delete, arguments, passive)
        self.server._expire(state)
        return DeclareOk(state.name, len(state.ready), len(state.consumers))

    async def queue_delete(self, queue_name: str, **_: Any) -> int:
        self._open()
        return self.server.delete(queue_name)

    def _cancel(self, tag: str) -> None:
        consumer = self.consumers.pop(tag, None)
        if consumer is None:
            return
        for state in list(self.server.queues.values()):
            if consumer in state.consumers:
                state.consumers.remove(consumer)
                if state.auto_delete and not state.consumers:
                    self.server.delete(state.name)

    def _shut(self) -> None:
        """Closed: consumers end, unacknowledged messages go back to their queues' heads."""
        if self._closed:
            return
        self._closed = True
        for tag in list(self.consumers):
            self._cancel(tag)
        for message in reversed(list(self.unacked.values())):
            message._back(requeue=True)
        self.unacked.clear()

    async def close(self, exc: BaseException | None = None) -> None:
        self._shut()

    async def reopen(self) -> None:
        if self.connection.is_closed:
            raise ChannelInvalidStateError("the connection is closed")
        self._closed = False


class StubConnection:
    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.channels: list[StubChannel] = []
        self.is_closed = False

    async def channel(self, **_: Any) -> StubChannel:
        if self.is_closed:
            raise ChannelInvalidStateError("the connection is closed")
        channel = StubChannel(self)
        self.channels.append(channel)
        return channel

    async def close(self, exc: BaseException | None = None) -> None:
        for channel in self.channels:
            channel._shut()
        self.is_closed = True
        for state in list(self.server.queues.values()):
            if state.owner is self:
                self.server.delete(state.name)


class StubBroker:
    """What the gateway uses of :class:`shared.messaging.broker.Broker`, in memory.

    Build it with :meth:`open` (it declares the topology, as ``open_broker`` does); give
    several the same ``server`` to have several processes share one RabbitMQ.
    """

    def __init__(
        self,
        prefix: str,
        server: StubServer,
        connection: StubConnection,
        channel: StubChannel,
        queue_type: str = "quorum",
    ) -> None:
        self.names = QueueNames(prefix)
        self.server = server
        self.connection = connection
        self.channel = channel
        self.queue_type = queue_type
        self.feedback_delivery_limit = 5

    @classmethod
    async def open(
        cls, prefix: str, server: StubServer | None = None, *, queue_type: str = "quorum"
    ) -> StubBroker:
        server = server or StubServer()
        connection = server.connect()
        broker = cls(prefix, server, connection, await connection.channel(), queue_type)
        await broker.declare_topology()
        return broker

    @property
    def queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    @property
    def feedback_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.names.feedback_dead,
        }
        if self.queue_type == "quorum":
            arguments["x-delivery-limit"] = self.feedback_delivery_limit
        return arguments

    def _arguments(self, name: str) -> dict[str, Any]:
        if name == self.names.feedback:
            return {**self.queue_arguments, **self.feedback_arguments}
        if name == self.names.feedback_dead:
            return {
                **self.queue_arguments,
                "x-message-ttl": 24 * 3600 * 1000,
                "x-max-length": 10_000,
            }
        return self.queue_arguments

    async def declare_queue(self, name: str, arguments: dict[str, Any] | None = None) -> StubQueue:
        with broker_errors():
            return await self.channel.declare_queue(
                name, durable=True, arguments={**self.queue_arguments, **(arguments or {})}
            )

    async def declare_topology(self) -> None:
        for name in (self.names.streams, self.names.feedback_dead, self.names.feedback):
            with broker_errors():
                await self.channel.declare_queue(
                    name, durable=True, arguments=self._arguments(name)
                )

    async def ensure_queue(self, name: str) -> None:
        await self.declare_queue(name)

    async def delete_queue(self, name: str) -> None:
        with broker_errors():
            await self.channel.queue_delete(name)

    async def queue_depth(self, name: str) -> tuple[int, int]:
        with broker_errors():
            result = await self.channel.queue_declare(
                name, durable=True, arguments=self._arguments(name)
            )
        return result.message_count, result.consumer_count

    async def open_channel(self, prefetch: int) -> StubChannel:
        if self.connection.is_closed:
            raise BrokerUnavailable("the connection to RabbitMQ is not open")
        with broker_errors():
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        correlation_id: str | None = None,
        message_id: str | None = None,
        reply_to: str | None = None,
        expiration: float | None = None,
        persistent: bool = True,
        headers: dict[str, Any] | None = None,
    ) -> None:
        properties = {
            "content_type": "application/json",
            "correlation_id": correlation_id,
            "message_id": message_id,
            "reply_to": reply_to,
            "expiration": expiration,
            "persistent": persistent,
            "headers": dict(headers or {}),
        }
        expires_at = None if expiration is None else time.monotonic() + expiration
        with broker_errors():
            self.channel._open()
            self.server.publish(routing_key, Envelope(body, properties, expires_at))

    async def is_open(self) -> bool:
        return not self.connection.is_closed and not self.channel.is_closed

    async def close(self) -> None:
        await self.connection.close()
