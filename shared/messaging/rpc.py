"""Feedback request/reply over RabbitMQ, the gateway's side.

The gateway publishes a batch (:class:`~shared.domain.feedback_batch.FeedbackBatch`, its
body serialised once) to ``<prefix>.feedback`` with the batch id as its message and
correlation id, its own reply queue and a time to live equal to the timeout; a queue worker
applies it and answers (:class:`~shared.domain.feedback_batch.FeedbackReply`). No
answer in time is :class:`shared.core.errors.FeedbackTimeout` (a LUNA 5xx), never a hang, and
the batch expires in the queue instead of being applied after the gateway gave up.

Overload is said at once: while batches are queued (the feedback queue's depth, sampled at
most every :data:`SAMPLE_EVERY` seconds) or in flight, and the last answers took most of the
timeout, a new batch is answered :class:`shared.core.errors.FeedbackOverloaded` (503 with
``Retry-After``) without being published, instead of a 504 after the timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
import uuid
from collections import deque

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.core.errors import (
    BrokerUnavailable,
    DependencyUnavailable,
    FeedbackOverloaded,
    FeedbackTimeout,
)
from shared.domain.feedback_batch import FeedbackBatch, FeedbackReply
from shared.messaging.broker import Broker, broker_errors
from shared.telemetry.metrics import RECEIVED_AT

log = logging.getLogger("luna_streams.feedback_rpc")

SAMPLE_EVERY = 0.5
#: refuse when a new batch would wait more than this share of the timeout
OVERLOAD_SHARE = 0.8
#: how many recent answers the estimate looks at
LATENCY_SAMPLES = 8


class FeedbackClient:
    def __init__(self, broker: Broker, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout
        self.reply_queue_name = f"{broker.names.prefix}.reply.{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[FeedbackReply]] = {}
        self._queue: AbstractQueue | None = None
        #: feedback batches waiting in the queue, as last sampled
        self.backlog = 0
        self._sampled_at = 0.0
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)

    def estimated_wait(self) -> float:
        """How long answers take now: the median of the last answers (a timeout counts as
        the timeout), or 0 before any."""
        return statistics.median(self._latencies) if self._latencies else 0.0

    async def _sample(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at < SAMPLE_EVERY:
            return
        self._sampled_at = now
        try:
            self.backlog, _ = await self.broker.queue_depth(self.broker.names.feedback)
        except BrokerUnavailable as exc:  # the publish below reports it to the client
            log.info("feedback queue depth unknown: %s", exc)

    def _check_overload(self) -> None:
        wait = self.estimated_wait()
        # with nothing queued or in flight the estimate is stale: let the batch through,
        # and its answer tells how long answers take now
        if (self.backlog or self._waiting) and wait > self.timeout * OVERLOAD_SHARE:
            raise FeedbackOverloaded(
                wait=wait, timeout=self.timeout, retry_after=max(1, math.ceil(wait / 2))
            )

    async def start(self) -> None:
        with broker_errors():
            self._queue = await self.broker.channel.declare_queue(
                self.reply_queue_name, exclusive=True, auto_delete=True
            )
            await self._queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiter = self._waiting.pop(message.correlation_id or "", None)
        if waiter is None or waiter.done():
            log.info("late feedback reply %s dropped", message.correlation_id)
            return
        try:
            waiter.set_result(FeedbackReply.model_validate_json(message.body))
        except ValueError as exc:  # pydantic's ValidationError too
            waiter.set_exception(exc)

    async def call(self, batch: FeedbackBatch) -> FeedbackReply:
        """Apply ``batch`` through a queue worker: its outcome (a reply with an error is
        :class:`~shared.core.errors.DependencyUnavailable`). Its ``received_at`` (Unix time,
        now by default): when the request arrived, for the worker's feedback-lag metric."""
        await self._sample()
        self._check_overload()
        started = time.monotonic()
        correlation_id = batch.batch_id
        waiter: asyncio.Future[FeedbackReply] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = waiter
        try:
            try:
                await self.broker.publish(
                    self.broker.names.feedback,
                    batch.model_dump_json().encode(),
                    correlation_id=correlation_id,
                    message_id=correlation_id,
                    reply_to=self.reply_queue_name,
                    expiration=self.timeout,
                    headers={RECEIVED_AT: batch.received_at or time.time()},
                )
            except BrokerUnavailable as exc:
                raise DependencyUnavailable(reason=f"RabbitMQ refused the feedback: {exc}") from exc
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await waiter
            except TimeoutError:
                self._latencies.append(self.timeout)
                raise FeedbackTimeout(timeout=self.timeout) from None
            self._latencies.append(time.monotonic() - started)
        finally:
            self._waiting.pop(correlation_id, None)
        if reply.error is not None:
            raise DependencyUnavailable(reason=f"queue worker failed: {reply.error}")
        return reply
