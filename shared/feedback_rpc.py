"""Feedback request/reply over RabbitMQ, the gateway's side.

The gateway publishes a batch to ``<prefix>.feedback`` with a correlation id, its own reply
queue and a time to live equal to the timeout; a queue worker applies it and answers. No
answer in time is :class:`shared.errors.FeedbackTimeout` (a LUNA 5xx), never a hang, and
the batch expires in the queue instead of being applied after the gateway gave up.

Overload is said at once: the client samples the feedback queue's depth (at most every
:data:`SAMPLE_EVERY` seconds) and learns from its own answers how long the workers take
per queued batch; when a new batch would wait longer than most of the timeout it answers
:class:`shared.errors.FeedbackOverloaded` (503 with ``Retry-After``) without publishing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.broker import Broker
from shared.errors import DependencyUnavailable, FeedbackOverloaded, FeedbackTimeout

log = logging.getLogger("luna_streams.feedback_rpc")

SAMPLE_EVERY = 0.5
#: refuse when a new batch would wait more than this share of the timeout
OVERLOAD_SHARE = 0.8
#: weight of the newest answer in the per-batch service time
EWMA = 0.2


class FeedbackClient:
    def __init__(self, broker: Broker, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout
        self.reply_queue_name = f"{broker.names.prefix}.reply.{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._queue: AbstractQueue | None = None
        #: feedback batches waiting in the queue, as last sampled
        self.backlog = 0
        self._sampled_at = 0.0
        #: seconds the workers take per queued batch, learnt from answers
        self.per_batch = 0.0

    def estimated_wait(self) -> float:
        return (self.backlog + len(self._waiting) + 1) * self.per_batch

    async def _sample(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at < SAMPLE_EVERY:
            return
        self._sampled_at = now
        try:
            self.backlog, _ = await self.broker.queue_depth(self.broker.names.feedback)
        except Exception as exc:  # the publish below reports an unavailable broker
            log.info("feedback queue depth unknown: %s", exc)

    def _check_overload(self) -> None:
        wait = self.estimated_wait()
        # with nothing queued the estimate is stale: let the batch through and learn again
        if self.backlog and wait > self.timeout * OVERLOAD_SHARE:
            raise FeedbackOverloaded(
                wait=wait, timeout=self.timeout, retry_after=max(1, math.ceil(wait - self.timeout))
            )

    def _learn(self, seconds: float, queued_before: int) -> None:
        sample = seconds / (queued_before + 1)
        self.per_batch = (
            sample if not self.per_batch else EWMA * sample + (1 - EWMA) * self.per_batch
        )

    async def start(self) -> None:
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
            waiter.set_result(json.loads(message.body))
        except ValueError as exc:
            waiter.set_exception(exc)

    async def call(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        await self._sample()
        self._check_overload()
        queued_before = self.backlog + len(self._waiting)
        started = time.monotonic()
        correlation_id = str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = waiter
        try:
            try:
                await self.broker.publish(
                    self.broker.names.feedback,
                    json.dumps({"streams": items}).encode(),
                    correlation_id=correlation_id,
                    message_id=correlation_id,
                    reply_to=self.reply_queue_name,
                    expiration=self.timeout,
                )
            except Exception as exc:
                raise DependencyUnavailable(reason=f"RabbitMQ refused the feedback: {exc}") from exc
            try:
                reply = await asyncio.wait_for(waiter, self.timeout)
            except TimeoutError:
                self._learn(self.timeout, queued_before)
                raise FeedbackTimeout(timeout=self.timeout) from None
            self._learn(time.monotonic() - started, queued_before)
        finally:
            self._waiting.pop(correlation_id, None)
        if "error" in reply:
            raise DependencyUnavailable(reason=f"queue worker failed: {reply['error']}")
        return reply
