"""What the gateway samples for its metrics, beside its requests: its own dependencies
(:mod:`shared.runtime.probes`) and the broker's queues that tell an operator whether feedback is
flowing: the feedback queue (messages waiting, queue workers consuming), its dead-letter
queue, the all-streams token queue.

The queues are read with passive declares on a channel of the sampler's own (a refused
declare closes its channel, never the one requests publish on), every
:data:`~shared.runtime.probes.PROBE_EVERY` seconds: a scrape reads gauges and asks RabbitMQ
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aio_pika.abc import AbstractChannel
from aiohttp import web

from gateway.keys import BROKER, DATABASE, EVENTS, FEEDBACK, METRICS
from gateway.metrics import GatewayMetrics
from shared.core.errors import BrokerUnavailable
from shared.messaging.broker import Broker, broker_errors, close_channel
from shared.runtime.probes import probe_forever

log = logging.getLogger("gateway.probes")


class QueueSampler:
    """Sample the feedback, dead-letter and token queues into the gateway's gauges."""

    def __init__(self, broker: Broker, metrics: GatewayMetrics) -> None:
        self.broker = broker
        self.metrics = metrics
        #: messages waiting in the feedback queue, as last sampled
        self.backlog = 0
        self._channel: AbstractChannel | None = None

    async def _depth(self, channel: AbstractChannel, name: str) -> tuple[int, int]:
        underlay = await channel.get_underlay_channel()
        result = await underlay.queue_declare(name, passive=True)
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def sample(self) -> None:
        names = self.broker.names
        try:
            with broker_errors():
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self.broker.connection.channel()
                channel = self._channel
                self.backlog, consumers = await self._depth(channel, names.feedback)
                dead, _ = await self._depth(channel, names.feedback_dead)
                tokens, _ = await self._depth(channel, names.streams)
        except (BrokerUnavailable, RuntimeError) as exc:
            # the connection is away (luna_streams_dependency_up says so) or a queue is
            # missing until its next declare: the gauges keep their last values
            log.debug("queues not sampled: %s", exc)
            await self.close()
            return
        self.metrics.feedback_consumers.set(consumers)
        self.metrics.dead_letters.set(dead)
        self.metrics.tokens.set(tokens)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        with contextlib.suppress(RuntimeError):
            await close_channel(channel)


async def probes_context(app: web.Application) -> AsyncIterator[None]:
    """The gateway's probes, from when its clients are open until they close."""
    metrics, broker = app[METRICS], app[BROKER]
    sampler = QueueSampler(broker, metrics)
    metrics.watch_feedback(lambda: float(sampler.backlog), app[FEEDBACK].estimated_wait)
    metrics.watch_events(lambda: float(len(app[EVENTS].subscriptions)))
    task = asyncio.create_task(
        probe_forever(lambda: app[DATABASE], lambda: broker.is_open, extra=sampler.sample)
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sampler.close()
