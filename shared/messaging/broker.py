"""RabbitMQ access: the robust connection, the topology and publishing, in one place.

Topology (every name carries ``LUNA_STREAMS_QUEUE_PREFIX``):

- ``<prefix>.streams``: queue tokens of every pending stream (claims consume it);
- ``<prefix>.streams.group.<group_id>``: queue tokens of the streams of one group;
- ``<prefix>.feedback``: feedback batches for the queue workers (request/reply);
- ``<prefix>.feedback.dead``: feedback messages no worker could apply (bounded: a day, 10,000).

Every publish is persistent, publisher-confirmed and mandatory: a message no queue takes
raises instead of vanishing. Declarations are idempotent, so every component declares the
topology at start.

Errors: aio-pika's (and aiormq's under it) are translated here, where aio-pika is called,
into :class:`shared.core.errors.BrokerUnavailable` by :func:`broker_errors`. Every method of
:class:`Broker` does so, and modules that call aio-pika objects themselves (messages,
consumer channels) wrap those calls in it; callers catch ``BrokerUnavailable`` only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
)
from yarl import URL

from shared.core.errors import BrokerUnavailable
from shared.core.settings import CommonSettings, node_urls

log = logging.getLogger("luna_streams.broker")

#: seconds a close of a channel or a connection may take before it is given up
CLOSE_TIMEOUT = 5.0

#: what aio-pika raises when RabbitMQ is away, or a connection or channel is lost or
#: refuses a call; any other error (a bare RuntimeError included) is not translated
DRIVER_ERRORS: Final[tuple[type[Exception], ...]] = (
    # aiormq's base, which aio-pika re-exports: connection and channel closed, publish
    # returned or nacked (aio-pika's connection errors are ConnectionErrors as well)
    aio_pika.exceptions.AMQPError,
    # a RuntimeError, but only ever about a closed channel (aiormq's, re-exported)
    aio_pika.exceptions.ChannelInvalidStateError,
    OSError,  # the socket: refused, reset, unreachable
    TimeoutError,  # a connect or an RPC without an answer in time
)


@contextmanager
def broker_errors() -> Iterator[None]:
    """Turn the :data:`DRIVER_ERRORS` raised in the block into
    :class:`~shared.core.errors.BrokerUnavailable` (the driver's error as its ``__cause__``);
    anything else passes unchanged."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc


async def close_channel(channel: AbstractChannel | None) -> None:
    """Close ``channel`` unless it is closed already (a lost channel's deliveries went back
    with it), giving up after :data:`CLOSE_TIMEOUT`: a close-ok RabbitMQ never sends must
    not hold a shutdown, and the channel goes with its connection anyway."""
    if channel is None or channel.is_closed:
        return
    try:
        with broker_errors():
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await channel.close()
    except BrokerUnavailable as exc:
        log.warning("a RabbitMQ channel did not close cleanly: %s", exc)


def _refused(exc: BaseException) -> bool:
    """A publish RabbitMQ refused (a negative confirm), not one it returned as unroutable."""
    cause = exc.__cause__ if isinstance(exc, BrokerUnavailable) else exc
    return isinstance(cause, aiormq.exceptions.DeliveryError) and not isinstance(
        cause, aiormq.exceptions.PublishError
    )


@dataclass(frozen=True, slots=True)
class QueueNames:
    prefix: str

    @property
    def streams(self) -> str:
        return f"{self.prefix}.streams"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}.feedback"

    @property
    def feedback_dead(self) -> str:
        return f"{self.prefix}.feedback.dead"

    def group(self, group_id: str) -> str:
        return f"{self.prefix}.streams.group.{group_id}"

    def every(self, group_ids: list[str]) -> list[str]:
        """Every queue of this prefix (those of the given groups included)."""
        return [self.streams, self.feedback, self.feedback_dead, *map(self.group, group_ids)]


#: queues remembered as declared, most recently used kept (one per group in use, plus two)
DECLARED_QUEUES_CACHE = 1024
#: the feedback dead-letter queue's arguments: a rejected batch kept a day, 10,000 at most
FEEDBACK_DEAD_ARGUMENTS: Final[dict[str, Any]] = {
    "x-message-ttl": 24 * 3600 * 1000,
    "x-max-length": 10_000,
}


def feedback_queue_arguments(
    names: QueueNames, queue_type: str, delivery_limit: int
) -> dict[str, Any]:
    """The feedback queue's arguments: rejected (and, on quorum queues, delivered more than
    ``delivery_limit`` times) batches are dead-lettered to ``names.feedback_dead``."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.feedback_dead,
    }
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = delivery_limit
    return arguments


@dataclass(slots=True)
class Broker:
    connection: AbstractRobustConnection
    channel: AbstractRobustChannel
    names: QueueNames
    queue_type: str
    feedback_delivery_limit: int = 5
    _queues: OrderedDict[str, AbstractQueue] = field(default_factory=OrderedDict)
    cache_size: int = DECLARED_QUEUES_CACHE
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: how many times the channel was renewed (:meth:`_renew_channel`)
    _channel_generation: int = 0

    @property
    def queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    async def declare_queue(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> AbstractQueue:
        """Declare once while remembered (the :attr:`cache_size` most recently used); the
        robust channel re-declares after a reconnect."""
        queue = self._queues.get(name)
        if queue is not None:
            self._queues.move_to_end(name)
            return queue
        # the topology is re-declared by the robust channel after a reconnect; group queues
        # are not registered there (that registry never shrinks): durable, they survive a
        # reconnect, and a publish that finds one gone forgets it, so the next declares it
        topology = name in (self.names.streams, self.names.feedback, self.names.feedback_dead)
        with broker_errors():
            queue = await self.channel.declare_queue(
                name,
                durable=True,
                arguments={**self.queue_arguments, **(arguments or {})},
                robust=topology,
            )
        self._queues[name] = queue
        while len(self._queues) > self.cache_size:
            self._queues.popitem(last=False)
        return queue

    @property
    def declared_queues(self) -> int:
        return len(self._queues)

    @property
    def feedback_arguments(self) -> dict[str, Any]:
        """Rejected (and, on quorum queues, too often delivered) batches are dead-lettered."""
        return feedback_queue_arguments(self.names, self.queue_type, self.feedback_delivery_limit)

    async def declare_feedback_queue(self) -> AbstractQueue:
        await self.declare_queue(self.names.feedback_dead, FEEDBACK_DEAD_ARGUMENTS)
        return await self.declare_queue(self.names.feedback, self.feedback_arguments)

    async def queue_depth(self, name: str) -> tuple[int, int]:
        """(messages ready, consumers) of a queue, as the broker sees them now."""
        arguments = self.feedback_arguments if name == self.names.feedback else {}
        with broker_errors():
            underlay = await self.channel.get_underlay_channel()
            result = await underlay.queue_declare(
                name, durable=True, arguments={**self.queue_arguments, **arguments}
            )
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def declare_topology(self) -> None:
        await self.declare_queue(self.names.streams)
        await self.declare_feedback_queue()

    async def ensure_queue(self, name: str) -> None:
        await self.declare_queue(name)

    async def delete_queue(self, name: str) -> None:
        self._queues.pop(name, None)
        with broker_errors():
            await self.channel.queue_delete(name)

    async def open_channel(self, prefetch: int) -> AbstractChannel:
        """A channel of its own (a consumer's), delivering at most ``prefetch`` unacknowledged
        messages."""
        if not self._connection_open():
            # closed, or reconnecting: aio-pika would raise a bare RuntimeError
            raise BrokerUnavailable("the connection to RabbitMQ is not open")
        try:
            with broker_errors():
                channel = await self.connection.channel()
                await channel.set_qos(prefetch_count=prefetch)
        except RuntimeError as exc:
            if self._connection_open():
                raise  # not a lost connection: a bug, said as one
            # lost while the channel opened: aiormq says so with a bare RuntimeError
            raise BrokerUnavailable(str(exc)) from exc
        return channel

    def _connection_open(self) -> bool:
        transport = self.connection.transport
        return (
            not self.connection.is_closed
            and transport is not None
            and not transport.connection.is_closed
        )

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
        """Publish through the default exchange; returns once RabbitMQ confirmed it. A
        publish RabbitMQ refuses is tried once more, on a fresh channel."""
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
            correlation_id=correlation_id,
            message_id=message_id,
            reply_to=reply_to,
            expiration=expiration,
            headers=headers,
        )
        for attempt in (1, 2):
            generation = self._channel_generation
            try:
                with broker_errors():
                    await self.channel.default_exchange.publish(
                        message, routing_key, mandatory=True
                    )
                return
            except BaseException as exc:  # re-raised: whatever stopped it, the queue may be gone
                self._queues.pop(routing_key, None)  # declared again before the next publish
                if attempt == 1 and _refused(exc) and await self._renew_channel(generation):
                    # most likely not enqueued: once more, on a fresh channel (a duplicate,
                    # should the refusal have been wrong, is harmless: tokens and feedback
                    # batches are idempotent)
                    continue
                raise

    async def _renew_channel(self, generation: int) -> bool:
        """Close the channel and open it again (its queues and consumers restored); whether
        it did.

        After a quorum queue's leader was lost, RabbitMQ 3.10 was seen refusing (nacking)
        every further publish of a channel that published to it before, while a new
        channel's publishes went through (tests/fault/test_broker_node_kill.py). Only a
        channel of a live connection is renewed: one whose connection is lost is restored
        with it by the robust connection, and closing it then would keep it closed."""
        async with self._lock:
            if generation != self._channel_generation:
                return True  # renewed since that publish began, by another publish
            if not self._connection_open():
                return False
            if self.channel.is_closed:
                return False
            log.warning("RabbitMQ refused a publish: the channel is opened again")
            self._channel_generation += 1
            try:
                with broker_errors():
                    await self.channel.close()
                    await self.channel.reopen()
            except BrokerUnavailable as exc:
                log.warning("the channel could not be opened again: %s", exc)
                return False
            return True

    async def is_open(self) -> bool:
        return not self.connection.is_closed and not self.channel.is_closed

    async def close(self) -> None:
        """Close the connection; a close RabbitMQ does not answer within
        :data:`CLOSE_TIMEOUT` is given up (the socket goes with the process), so a
        shutdown never waits on a connection the robust reconnect holds half-open."""
        try:
            with broker_errors():
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.connection.close()
        except BrokerUnavailable as exc:
            log.warning("the RabbitMQ connection did not close cleanly: %s", exc)


#: seconds between two attempts to reach a node after the connection was lost
RECONNECT_INTERVAL = 1.0


class NodeListConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection, to one node of a list at a time: every attempt after
    the first goes to the next node. So a process whose node goes away reconnects to
    another node of the cluster, restores its channels, queues and consumers there, and
    carries on without a restart; a node that does not answer is skipped the same way.

    aio-pika reconnects to its one URL only (mosquito/aio-pika#141), so this class turns to
    the next node in the one place every attempt passes through: aio-pika's private
    ``__connect_transport`` (its name-mangled form, tested against the pinned version in
    ``tests/unit/test_broker_nodes.py``).
    """

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        self.nodes = [URL(url) for url in urls]
        self.node = 0
        self._attempts = 0
        super().__init__(self.nodes[0], **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:
        if self._attempts:
            self.node = (self.node + 1) % len(self.nodes)
            self.url = self.nodes[self.node]
        self._attempts += 1
        await super()._RobustConnection__connect_transport()  # type: ignore[misc]


async def connect_nodes(url: str, *, timeout: float) -> NodeListConnection:  # noqa: ASYNC109
    """A :class:`NodeListConnection` to the first node of ``url`` that answers (each is
    given ``timeout`` seconds); the last node's error when none does."""
    nodes = node_urls(url)
    refused = BrokerUnavailable("no RabbitMQ URL given")
    for index in range(len(nodes)):
        # this node first, then the others in order: the connection turns to them later
        connection = NodeListConnection(
            nodes[index:] + nodes[:index], reconnect_interval=RECONNECT_INTERVAL
        )
        try:
            with broker_errors():
                await connection.connect(timeout=timeout)
        except BrokerUnavailable as exc:
            await connection.close()
            refused = exc
            continue
        return connection
    raise refused


async def open_broker(
    url: str,
    prefix: str,
    *,
    queue_type: str = "quorum",
    feedback_delivery_limit: int = 5,
    connect_timeout: float = 5.0,
) -> Broker:
    """Connect (robust: it reconnects and restores channels) and declare the topology;
    :class:`~shared.core.errors.BrokerUnavailable` when RabbitMQ does not let us."""
    connection = await connect_nodes(url, timeout=connect_timeout)
    try:
        with broker_errors():
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    except BaseException:  # re-raised, after closing what was opened
        await connection.close()
        raise
    broker = Broker(
        connection=connection,
        channel=channel,
        names=QueueNames(prefix),
        queue_type=queue_type,
        feedback_delivery_limit=feedback_delivery_limit,
    )
    try:
        await broker.declare_topology()
    except BaseException:  # re-raised, after closing what was opened
        await connection.close()
        raise
    return broker


async def open_configured_broker(settings: CommonSettings) -> Broker:
    """:func:`open_broker` as a process's settings say (URL, prefix, queue type)."""
    return await open_broker(
        settings.amqp_url,
        settings.queue_prefix,
        queue_type=settings.queue_type,
        feedback_delivery_limit=settings.feedback_delivery_limit,
    )
