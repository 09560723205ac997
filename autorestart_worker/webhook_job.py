"""The webhooks job of the autorestart worker: a dramatiq actor started each
``LUNA_STREAMS_WEBHOOK_INTERVAL`` (one replica a period, :mod:`shared.runtime.job_worker`)
that writes the deliveries of new stream log rows
(:class:`~shared.services.webhooks.dispatch.Dispatcher`) and starts the due ones
(:class:`~shared.services.webhooks.delivery.DeliveryPool`); and, beside it, the pool's
lifetime: on shutdown the attempts in flight get the shutdown bound to end, then its HTTP
client closes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.core.settings import AutorestartWorkerSettings
from shared.runtime.job_worker import Background, JobClients, PeriodicJob
from shared.services.webhooks.delivery import DeliveryPool
from shared.services.webhooks.dispatch import Dispatcher

NAME = "webhooks"


@dataclass(frozen=True, slots=True)
class WebhookJob:
    periodic: PeriodicJob
    pool_lifetime: Background


def webhook_job(settings: AutorestartWorkerSettings) -> WebhookJob:
    pool = DeliveryPool(settings)

    async def run(clients: JobClients) -> int:
        written = await Dispatcher(clients.database).run()
        return written + await pool.run(clients.database)

    async def lifetime(clients: JobClients) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await pool.close(settings.shutdown_timeout / 2)

    return WebhookJob(PeriodicJob(NAME, run, settings.webhook_interval), lifetime)
