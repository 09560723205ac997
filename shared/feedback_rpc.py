"""Feedback request/reply over RabbitMQ, the gateway's side.

The gateway publishes a batch to ``<prefix>.feedback`` with a correlation id, its own reply
queue and a time to live equal to the timeout; a queue worker applies it and answers. No
answer in time is :class:`shared.errors.FeedbackTimeout` (a LUNA 5xx), never a hang, and
the batch expires in the queue instead of being applied after the gateway gave up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.broker import Broker
from shared.errors import DependencyUnavailable, FeedbackTimeout

log = logging.getLogger("luna_streams.feedback_rpc")


class FeedbackClient:
    def __init__(self, broker: Broker, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout
        self.reply_queue_name = f"{broker.names.prefix}.reply.{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._queue: AbstractQueue | None = None

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
                raise FeedbackTimeout(timeout=self.timeout) from None
        finally:
            self._waiting.pop(correlation_id, None)
        if "error" in reply:
            raise DependencyUnavailable(reason=f"queue worker failed: {reply['error']}")
        return reply
