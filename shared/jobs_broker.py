"""dramatiq on RabbitMQ: the broker and the job queue's name, for senders and the worker.

Senders (the queue worker, the scheduler) enqueue by actor name, so no process imports
another's actors; the autorestart worker declares the actors on the same queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AsyncIO

from shared.settings import Settings

RESTART_STREAM = "restart_stream"
RUN_PERIODIC = "run_periodic"


AUTORESTART = "autorestart"
JANITOR = "janitor"


def jobs_queue(settings: Settings, component: str) -> str:
    """Each worker kind has its own dramatiq queue (it only knows its own actors)."""
    return f"{settings.queue_prefix}.jobs.{component}"


def make_jobs_broker(settings: Settings) -> RabbitmqBroker:
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    broker.add_middleware(AsyncIO())
    return broker


class JobSender:
    """Enqueue jobs from asyncio code (dramatiq's client is blocking: run it in a thread)."""

    def __init__(self, settings: Settings, component: str) -> None:
        self.queue = jobs_queue(settings, component)
        self._settings = settings
        self._broker: RabbitmqBroker | None = None

    def _get_broker(self) -> RabbitmqBroker:
        if self._broker is None:
            self._broker = make_jobs_broker(self._settings)
        return self._broker

    def _enqueue(self, actor: str, args: tuple[Any, ...], delay_ms: int | None) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue, actor_name=actor, args=args, kwargs={}, options={}
        )
        self._get_broker().enqueue(message, delay=delay_ms)

    async def send(self, actor: str, *args: Any, delay_ms: int | None = None) -> None:
        await asyncio.to_thread(self._enqueue, actor, args, delay_ms)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
