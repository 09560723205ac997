"""Feedback consumer: competing consumers on ``<prefix>.feedback``.

Delivery is at least once: a batch is acknowledged only after it was applied and answered,
so a worker that dies mid-batch leaves it to be redelivered to another worker, which
applies it idempotently (:mod:`shared.services.feedback`). Batches that arrive together (up to the
prefetch) are applied together, in one pass over the database.

Every message gets an answer. One that is not a feedback batch (whatever it holds: bad
JSON, JSON nested 100,000 deep, wrong fields) is answered with an error and rejected to the
dead-letter queue at once; one whose application fails for any reason but a database
outage is rejected there too; the broker dead-letters a message delivered
``LUNA_STREAMS_FEEDBACK_DELIVERY_LIMIT`` times (one that kills its worker). A database
outage requeues the batches, with jittered backoff. On SIGTERM the worker stops
consuming, lets the batches in hand finish (bounded), then closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pymongo.errors import PyMongoError

from shared.core.backoff import Backoff
from shared.core.errors import BrokerUnavailable
from shared.core.settings import QueueWorkerSettings
from shared.domain.feedback_batch import FeedbackBatch, FeedbackReply
from shared.messaging.broker import Broker, broker_errors, open_configured_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.runtime.lifecycle import Readiness
from shared.runtime.probes import probe_forever
from shared.services.feedback import apply_feedback
from shared.store.changes import StreamChanges
from shared.store.mongo import Database, open_configured_database
from shared.telemetry import tracing
from shared.telemetry.metrics import (
    CONSUMER_UP,
    FEEDBACK_BATCHES,
    FEEDBACK_ITEMS,
    RECEIVED_AT,
    feedback_applied,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger("queue_worker")

#: a database failure requeues the batches after 0.2-1 s, longer while failures go on
REQUEUE_BACKOFF = Backoff(first=1.0, cap=10.0, jitter=(0.2, 1.0))

#: a message as it waits to be applied: when it arrived, and the trace it continues (None
#: with tracing off)
Arrival = tuple[float, AbstractIncomingMessage, "Context | None"]

#: seconds between two clock synchronisations with the database server
CLOCK_SYNC_EVERY = 30


def _expired(message: AbstractIncomingMessage, held: float) -> bool:
    """A first delivery held here longer than its time to live (a redelivery is finished
    whatever its age: its first delivery may have applied part of it)."""
    ttl = message.expiration
    if not isinstance(ttl, int | float) or message.redelivered:
        return False
    return held >= float(ttl)


def _items(batches: list[tuple[AbstractIncomingMessage, FeedbackBatch]]) -> int:
    return sum(len(batch.streams) for _, batch in batches)


class FeedbackWorker:
    """The queue worker's component (:mod:`shared.runtime.lifecycle`)."""

    name = "queue-worker"

    def __init__(self, settings: QueueWorkerSettings) -> None:
        self.settings = settings
        self.readiness = Readiness()
        self.database: Database | None = None
        self.broker: Broker | None = None
        self.changes: StreamChanges | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._arrived: list[Arrival] = []
        self._wake = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._in_hand = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.applied_batches = 0
        self.failed_batches = 0
        #: database failures in a row: how long a requeue waits (:data:`REQUEUE_BACKOFF`)
        self._failures = 0
        self.rejected_messages = 0
        self.expired_batches = 0
        self.unhealthy_since: float | None = None
        #: monotonic time since which the oldest batch in hand waits (None: none in hand)
        self.busy_since: float | None = None

    async def start(self) -> None:
        settings = self.settings
        self.database = await open_configured_database(settings)
        self.broker = await open_configured_broker(settings)
        self.changes = StreamChanges(self.database, BrokerTokenPublisher(self.broker))
        self._applier = asyncio.create_task(self._apply_forever())
        self._probe = asyncio.create_task(
            probe_forever(lambda: self.database, self._broker_probe, self.healthy)
        )
        with broker_errors():
            await self.broker.channel.set_qos(prefetch_count=settings.feedback_prefetch)
        self._queue = await self.broker.declare_feedback_queue()
        with broker_errors():
            self._consumer_tag = await self._queue.consume(self.on_message)
        log.info("consuming %s (prefetch %d)", self._queue.name, settings.feedback_prefetch)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._in_hand += 1
        self._idle.clear()
        if self.busy_since is None:
            self.busy_since = time.monotonic()
        self._arrived.append((time.monotonic(), message, tracing.received(message.headers)))
        self._wake.set()

    async def _apply_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            messages, self._arrived = self._arrived, []
            if not messages:
                continue
            try:
                with broker_errors():
                    await self._apply(messages)
            except BrokerUnavailable as exc:
                # the broker connection went away under the answers: what was not
                # acknowledged is redelivered, and this worker goes on with the next
                log.warning("feedback batches left unacknowledged: %s", exc)
            except Exception:  # a bug: said with its traceback; the applier must go on
                log.exception("feedback batches left unacknowledged")
            finally:
                self._in_hand -= len(messages)
                self.busy_since = time.monotonic() if self._arrived else None
                if not self._in_hand:
                    self._idle.set()

    async def _apply(self, arrivals: list[Arrival]) -> None:
        assert self.database is not None and self.changes is not None
        batches: list[tuple[AbstractIncomingMessage, FeedbackBatch]] = []
        traces: list[Context | None] = []  # each batch's
        now = time.monotonic()
        for arrived_at, message, trace in arrivals:
            if _expired(message, now - arrived_at):
                # its gateway has answered already (a 504): applying it now would only
                # delay the batches someone still waits for; dropped as the queue would
                self.expired_batches += 1
                FEEDBACK_BATCHES.labels(outcome="expired").inc()
                await message.reject(requeue=False)
                continue
            with tracing.attached(trace):  # a rejection's answer, in its own trace
                batch = await self._parse(message)
            if batch is not None:
                batches.append((message, batch))
                traces.append(trace)
        if not batches:
            return
        started = time.monotonic()
        try:
            # one span for the batches applied together (its database commands are its
            # children): in the first batch's trace, linked to the others'
            with tracing.span(
                "apply feedback",
                traces,
                {"luna.feedback.batches": len(batches), "luna.feedback.items": _items(batches)},
            ):
                results = await apply_feedback(self.database, self.changes, [b for _, b in batches])
        except PyMongoError as exc:
            self.failed_batches += len(batches)
            FEEDBACK_BATCHES.labels(outcome="requeued").inc(len(batches))
            log.warning("%d feedback batches not applied, requeued: %s", len(batches), exc)
            self._failures += 1
            await asyncio.sleep(REQUEUE_BACKOFF.delay(self._failures))
            for message, _ in batches:
                await message.nack(requeue=True)
            return
        except Exception:
            # a bug or a batch the rules cannot take: answer and dead-letter, never spin
            log.exception("feedback batches failed; dead-lettering %d", len(batches))
            FEEDBACK_ITEMS.labels(outcome="rejected").inc(_items(batches))
            for message, _ in batches:
                await self._reject(message, "feedback batch could not be applied")
            return
        feedback_applied(
            [(len(result.modified), len(result.unmodified)) for result in results],
            [batch.received_at for _, batch in batches],
            time.monotonic() - started,
        )
        # counted before the answers go out: whoever reads an answer sees its batch counted
        self.applied_batches += len(batches)
        self._failures = 0
        log.debug(
            "applied %d batches (%d items) in %.3f s",
            len(batches),
            _items(batches),
            time.monotonic() - started,
        )
        for (message, _), result, trace in zip(batches, results, traces, strict=True):
            with tracing.attached(trace):  # each answer in its request's trace
                await self._reply(message, FeedbackReply(streams=result))
            await message.ack()

    async def _parse(self, message: AbstractIncomingMessage) -> FeedbackBatch | None:
        """The batch a message holds (its body validated once), or None after answering
        and rejecting it."""
        try:
            batch = FeedbackBatch.model_validate_json(message.body)
        except (ValueError, RecursionError) as exc:  # whatever it holds, it gets an answer
            log.error(
                "rejecting a malformed feedback batch %s: %s",
                message.message_id,
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
            await self._reject(message, "malformed feedback batch")
            return None
        return batch.delivered(
            message.message_id or message.correlation_id or str(message.delivery_tag),
            redelivered=bool(message.redelivered),
            received_at=(message.headers or {}).get(RECEIVED_AT),
        )

    async def _reject(self, message: AbstractIncomingMessage, reason: str) -> None:
        self.rejected_messages += 1
        FEEDBACK_BATCHES.labels(outcome="rejected").inc()
        await self._reply(message, FeedbackReply(error=reason))
        await message.reject(requeue=False)  # to the dead-letter queue

    async def _reply(self, message: AbstractIncomingMessage, reply: FeedbackReply) -> None:
        assert self.broker is not None
        if not message.reply_to:
            return
        try:
            await self.broker.publish(
                message.reply_to,
                reply.body(),
                correlation_id=message.correlation_id,
                persistent=False,
            )
        except BrokerUnavailable as exc:  # the gateway went away: its client gets a timeout
            log.info("reply to %s not delivered: %s", message.reply_to, exc)

    def _broker_probe(self) -> Callable[[], Awaitable[bool]] | None:
        return self.broker.is_open if self.broker is not None else None

    def healthy(self) -> bool:
        """The connection, channel and consumer are up (a robust connection restores them)."""
        broker = self.broker
        return (
            broker is not None
            and not broker.connection.is_closed
            and not broker.channel.is_closed
            and self._consumer_tag is not None
        )

    def stalled_for(self) -> float:
        """Seconds the oldest batch in hand has waited (0 when none is in hand)."""
        return 0.0 if self.busy_since is None else time.monotonic() - self.busy_since

    async def broken(self) -> str:
        """Return when the consumer has been down, or stuck on a batch, for
        ``LUNA_STREAMS_CONSUMER_STALL_TIMEOUT`` (its supervisor then restarts the process)."""
        stall_timeout = self.settings.consumer_stall_timeout
        beats = 0
        while True:
            await asyncio.sleep(1.0)
            beats += 1
            if beats % CLOCK_SYNC_EVERY == 0 and self.database is not None:
                try:
                    await self.database.ping()  # the clock follows the server's
                except PyMongoError as exc:
                    log.info("database not answering: %s", exc)
            if self.stalled_for() >= stall_timeout:
                return f"a feedback batch has been in hand for {self.stalled_for():.0f} s"
            if self.healthy():
                self.unhealthy_since = None
                continue
            now = time.monotonic()
            self.unhealthy_since = self.unhealthy_since or now
            if now - self.unhealthy_since >= stall_timeout:
                return f"the consumer has been down for {now - self.unhealthy_since:.0f} s"

    async def stop_taking_work(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            try:
                with broker_errors():
                    await self._queue.cancel(tag)
            except BrokerUnavailable as exc:  # its channel is gone: nothing more comes
                log.info("consumer not cancelled: %s", exc)

    async def finish(self, timeout: float) -> Mapping[str, int]:  # noqa: ASYNC109 - a bound
        """Let the batches in hand finish (bounded); what is left is redelivered."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "%d batches still in hand at shutdown: they will be redelivered", self._in_hand
            )
        if self._applier is not None:
            self._applier.cancel()
        return {
            "batches applied": self.applied_batches,
            "requeued": self.failed_batches,
            "rejected": self.rejected_messages,
            "expired": self.expired_batches,
        }

    async def close(self) -> None:
        if self._applier is not None:
            self._applier.cancel()
        if self._probe is not None:
            self._probe.cancel()
        CONSUMER_UP.set(0)
        if self.broker is not None:
            await self.broker.close()
            self.broker = None
        if self.database is not None:
            await self.database.close()
            self.database = None

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - a drain bound
        """The end of the lifecycle in one call (tests run the worker in their process)."""
        await self.stop_taking_work()
        counts = await self.finish(timeout)
        log.info("stopped: %s", counts)
        await self.close()
