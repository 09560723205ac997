"""The gateway's broker, in memory, as dramatiq's ``StubBroker`` is for its actors.

:class:`StubBroker` stands where :class:`shared.messaging.broker.Broker` stands and offers
what the gateway calls on it (``publish``, ``ensure_queue``, ``delete_queue``,
``queue_depth``, ``open_channel``, ``is_open``, ``close``, its ``channel`` and
``connection``), over the queues of a :class:`~tests.stub_rabbitmq.StubServer` (RabbitMQ's
semantics there). No network, no canned answers: a token published is in its queue until a
consumer takes it. Errors come out as the real ``Broker`` lets them out:
:class:`~shared.core.errors.BrokerUnavailable`, and aio-pika's own from the channels and
messages it hands out (which the gateway translates where it calls them).
"""

from __future__ import annotations

import time
from typing import Any

from aiormq.exceptions import (
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from shared.core.errors import BrokerUnavailable
from shared.messaging.broker import (
    FEEDBACK_DEAD_ARGUMENTS,
    QueueNames,
    broker_errors,
    feedback_queue_arguments,
)
from tests.stub_rabbitmq import (
    Callback,
    Consumer,
    DeclareOk,
    Envelope,
    QueueState,
    StubMessage,
    StubServer,
)


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
        connection = StubConnection(server)
        broker = cls(prefix, server, connection, await connection.channel(), queue_type)
        await broker.declare_topology()
        return broker

    @property
    def queue_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    @property
    def feedback_arguments(self) -> dict[str, Any]:
        return feedback_queue_arguments(self.names, self.queue_type, self.feedback_delivery_limit)

    def _arguments(self, name: str) -> dict[str, Any]:
        if name == self.names.feedback:
            return {**self.queue_arguments, **self.feedback_arguments}
        if name == self.names.feedback_dead:
            return {**self.queue_arguments, **FEEDBACK_DEAD_ARGUMENTS}
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
