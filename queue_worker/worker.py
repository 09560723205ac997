"""Feedback consumer: competing consumers on ``<prefix>.feedback``.

Delivery is at least once: a batch is acknowledged only after it was applied and answered,
so a worker that dies mid-batch leaves it to be redelivered to another worker, which
applies it idempotently (:mod:`shared.feedback`). Prefetch bounds what one worker holds.
On SIGTERM it stops consuming, lets the batches in hand finish (bounded), then closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from shared.autorestart import RestartScheduler
from shared.broker import Broker, open_broker
from shared.feedback import apply_feedback
from shared.models import FeedbackRequest
from shared.mongo import Database, open_database
from shared.settings import Settings

log = logging.getLogger("queue_worker")


class FeedbackWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database: Database | None = None
        self.broker: Broker | None = None
        self.scheduler: RestartScheduler | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_hand = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.applied_batches = 0
        self.failed_batches = 0
        self.unhealthy_since: float | None = None

    async def start(self) -> None:
        settings = self.settings
        if not settings.mongo_uri:
            raise RuntimeError("LUNA_STREAMS_MONGO_URI is not set")
        self.database = await open_database(settings.mongo_uri, settings.db_name)
        self.broker = await open_broker(
            settings.amqp_url, settings.queue_prefix, queue_type=settings.queue_type
        )
        self.scheduler = RestartScheduler(settings)
        await self.broker.channel.set_qos(prefetch_count=settings.feedback_prefetch)
        self._queue = await self.broker.declare_queue(self.broker.names.feedback)
        self._consumer_tag = await self._queue.consume(self.on_message)
        log.info("consuming %s (prefetch %d)", self._queue.name, settings.feedback_prefetch)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        assert self.database is not None and self.broker is not None
        self._in_hand += 1
        self._idle.clear()
        try:
            await self._handle(message)
        finally:
            self._in_hand -= 1
            if not self._in_hand:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        assert self.database is not None and self.broker is not None
        try:
            request = FeedbackRequest.model_validate(json.loads(message.body))
        except (ValueError, ValidationError) as exc:
            log.error("rejecting a malformed feedback batch %s: %s", message.message_id, exc)
            await self._reply(message, {"error": "malformed feedback batch"})
            await message.reject(requeue=False)
            return
        batch_id = message.message_id or message.correlation_id or str(message.delivery_tag)
        items = [item.model_dump(mode="json") for item in request.streams]
        try:
            result = await apply_feedback(self.database, batch_id, items)
        except PyMongoError as exc:
            self.failed_batches += 1
            log.warning("feedback batch %s not applied, requeued: %s", batch_id, exc)
            await asyncio.sleep(random.uniform(0.2, 1.0))
            await message.nack(requeue=True)
            return
        if result.restarts and self.scheduler is not None:
            await self.scheduler.schedule(result.restarts)
        await self._reply(message, result.body())
        await message.ack()
        self.applied_batches += 1

    async def _reply(self, message: AbstractIncomingMessage, body: dict[str, Any]) -> None:
        assert self.broker is not None
        if not message.reply_to:
            return
        try:
            await self.broker.publish(
                message.reply_to,
                json.dumps(body).encode(),
                correlation_id=message.correlation_id,
                persistent=False,
            )
        except Exception as exc:  # the gateway went away: its client gets a timeout
            log.info("reply to %s not delivered: %s", message.reply_to, exc)

    def healthy(self) -> bool:
        """The connection, channel and consumer are up (a robust connection restores them)."""
        broker = self.broker
        return (
            broker is not None
            and not broker.connection.is_closed
            and not broker.channel.is_closed
            and self._consumer_tag is not None
        )

    async def watch(self, stall_timeout: float) -> None:
        """Return when the consumer has been down for ``stall_timeout`` seconds."""
        while True:
            await asyncio.sleep(1.0)
            if self.healthy():
                self.unhealthy_since = None
                continue
            now = time.monotonic()
            self.unhealthy_since = self.unhealthy_since or now
            if now - self.unhealthy_since >= stall_timeout:
                log.error("consumer down for %.0f s", now - self.unhealthy_since)
                return

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - a drain bound
        """Stop taking batches, finish those in hand (bounded), close."""
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception as exc:
                log.info("cancel consumer: %s", exc)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "%d batches still in hand at shutdown: they will be redelivered", self._in_hand
            )
        log.info(
            "stopped: %d batches applied, %d requeued", self.applied_batches, self.failed_batches
        )
        if self.broker is not None:
            await self.broker.close()
        if self.database is not None:
            await self.database.close()
        if self.scheduler is not None:
            self.scheduler.close()
