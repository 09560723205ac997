"""A gateway's buffers of queue tokens: claims take tokens in bulk, not one round trip each.

While claims come in, a gateway consumes each token queue it claims from with a prefetch
(``LUNA_STREAMS_CLAIM_PREFETCH``), on a channel of its own, and keeps the delivered,
unacknowledged tokens in memory; a claim takes what it needs from there. Nothing is lost
by holding: an unacknowledged token goes back to the queue when the channel or the gateway
dies, and a claim acknowledges a token only after deciding it. Nothing is hoarded either:
a token held longer than ``LUNA_STREAMS_CLAIM_HOLD`` seconds goes back to the queue (other
gateways' agents may want it), and a buffer that no claim used for that long stops
consuming and closes its channel, so an idle gateway holds no token. The number of buffers
is bounded (the least recently used one closes first).

Every aio-pika call here runs in :func:`shared.messaging.broker.broker_errors`: a lost broker is
:class:`shared.core.errors.BrokerUnavailable` to the claim that meets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.exceptions import ChannelInvalidStateError

from shared.core.errors import BrokerUnavailable
from shared.messaging.broker import Broker, broker_errors, close_channel

log = logging.getLogger("luna_streams.token_buffer")

#: how long a claim waits for the first tokens of a consumer it has just started on a queue
#: that has some (an empty queue is not waited for)
FIRST_DELIVERY_WAIT = 0.2
#: how long a claim waits for more tokens when the buffer ran dry (deliveries in flight)
REFILL_WAIT = 0.01
MAX_BUFFERS = 64


def _channel_open(message: AbstractIncomingMessage) -> bool:
    """Whether the channel a token came on is still open (aio-pika raises, rather than
    answer, for a closed one: after a lost connection, the tokens of the old channel)."""
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:
        return False


class TokenBuffer:
    def __init__(self, broker: Broker, queue_name: str, prefetch: int, hold: float) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.hold = hold
        self.last_used = time.monotonic()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._held: deque[tuple[float, AbstractIncomingMessage]] = deque()
        self._arrived = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def consuming(self) -> bool:
        return self._tag is not None and self._channel is not None and not self._channel.is_closed

    async def _consume(self) -> bool:
        """Start consuming; True when this call started it on a queue that has tokens
        ready (their first deliveries are worth waiting for)."""
        if self.consuming:
            return False
        await self._close_channel()
        channel = await self.broker.open_channel(self.prefetch)
        self._channel = channel
        with broker_errors():
            self._queue = await channel.declare_queue(
                self.queue_name, durable=True, arguments=self.broker.queue_arguments
            )
            self._tag = await self._queue.consume(self._on_message)
        ready = getattr(self._queue.declaration_result, "message_count", None)
        return ready is None or ready > 0

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._held.append((time.monotonic(), message))
        self._arrived.set()

    async def take(self, count: int) -> list[AbstractIncomingMessage]:
        """Up to ``count`` tokens, oldest first; [] when the queue has none for us now."""
        async with self._lock:
            self.last_used = time.monotonic()
            started = await self._consume()
            if not self._held:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FIRST_DELIVERY_WAIT if started else REFILL_WAIT):
                        await self._arrived.wait()
            taken: list[AbstractIncomingMessage] = []
            while self._held and len(taken) < count:
                _, message = self._held.popleft()
                if _channel_open(message):  # else the broker redelivers it
                    taken.append(message)
            return taken

    def give_back(self, messages: list[AbstractIncomingMessage]) -> None:
        """Tokens a claim could not use: held for the next claims (until ``hold``)."""
        now = time.monotonic()
        self._held.extendleft((now, m) for m in reversed(messages))

    async def release(self, now: float) -> int:
        """Return tokens held past ``hold``; stop consuming when unused for as long."""
        released = 0
        keep: deque[tuple[float, AbstractIncomingMessage]] = deque()
        idle = now - self.last_used >= self.hold
        while self._held:
            held_since, message = self._held.popleft()
            if idle or now - held_since >= self.hold:
                # a lost channel returns it anyway
                with contextlib.suppress(BrokerUnavailable), broker_errors():
                    await message.nack(requeue=True)
                released += 1
            else:
                keep.append((held_since, message))
        self._held = keep
        if idle and self.consuming:
            await self._close_channel()
        return released

    async def _close_channel(self) -> None:
        channel, self._channel, self._tag, self._queue = self._channel, None, None, None
        self._held.clear()  # what was delivered on it goes back to the queue with it
        await close_channel(channel)

    async def close(self) -> None:
        async with self._lock:
            await self._close_channel()


class TokenBuffers:
    """One buffer per token queue a claim used; a task gives back what is held too long."""

    def __init__(self, broker: Broker, *, prefetch: int, hold: float) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self.hold = hold
        self._buffers: OrderedDict[str, TokenBuffer] = OrderedDict()
        self._releaser: asyncio.Task[None] | None = None

    async def get(self, queue_name: str) -> TokenBuffer:
        if self._releaser is None:
            self._releaser = asyncio.create_task(self._release_forever())
        buffer = self._buffers.get(queue_name)
        if buffer is None:
            buffer = self._buffers[queue_name] = TokenBuffer(
                self.broker, queue_name, self.prefetch, self.hold
            )
            while len(self._buffers) > MAX_BUFFERS:
                _, oldest = self._buffers.popitem(last=False)
                await oldest.close()
        self._buffers.move_to_end(queue_name)
        return buffer

    async def _release_forever(self) -> None:
        while True:
            await asyncio.sleep(self.hold / 2)
            now = time.monotonic()
            for name, buffer in list(self._buffers.items()):
                try:
                    await buffer.release(now)  # a lost broker is no error there
                except Exception:
                    # a bug, but this task must outlive it: without it no held token would
                    # ever go back to the queue for other gateways
                    log.exception("releasing tokens of %s failed", name)
                if not buffer.consuming and now - buffer.last_used > 60 * self.hold:
                    self._buffers.pop(name, None)

    async def close(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        for buffer in self._buffers.values():
            await buffer.close()
        self._buffers.clear()
