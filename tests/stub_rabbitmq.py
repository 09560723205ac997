"""An in-memory RabbitMQ: the queues, their messages and their consumers (the clients' side,
channels and connections, and the gateway's broker over them: :mod:`tests.stub_broker`).

The semantics the gateway relies on, as RabbitMQ has them:

- queues by name through the default exchange; a publish no queue takes raises (every
  publish is mandatory);
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
from typing import TYPE_CHECKING, Any

from aio_pika.exceptions import MessageProcessError
from aiormq.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

if TYPE_CHECKING:
    from tests.stub_broker import StubChannel, StubConnection

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
