"""What the autorestart worker runs: four periodic jobs, each a dramatiq actor, and the
fleet census (:mod:`shared.services.fleet`) beside them."""

from __future__ import annotations

from datetime import timedelta

from autorestart_worker.webhook_job import webhook_job
from shared.core.settings import AutorestartWorkerSettings
from shared.messaging.publisher import BrokerTokenPublisher
from shared.runtime.job_worker import AUTORESTART, JobClients, JobWorkerSpec, PeriodicJob
from shared.services.downgrade import downgrade_silent
from shared.services.fleet import census_forever
from shared.services.reconciler import reconcile_tokens
from shared.services.restarts import restart_due


def spec(settings: AutorestartWorkerSettings) -> JobWorkerSpec:
    async def autorestart_sweep(clients: JobClients) -> int:
        return await restart_due(clients.database, clients.changes)

    async def downgrade(clients: JobClients) -> int:
        return await downgrade_silent(
            clients.database, clients.changes, settings.stream_status_obsoleting_period
        )

    async def reconcile(clients: JobClients) -> int:
        return await reconcile_tokens(
            clients.database,
            clients.broker,
            BrokerTokenPublisher(clients.broker),
            grace=settings.reconcile_interval,
        )

    async def outbox_sweep(clients: JobClients) -> int:
        return await clients.changes.sweep(timedelta(seconds=settings.change_sweep_delay))

    async def fleet_census(clients: JobClients) -> None:
        await census_forever(clients.database, settings.fleet_census_interval)

    webhooks = webhook_job(settings)
    return JobWorkerSpec(
        component="autorestart-worker",
        kind=AUTORESTART,
        periodic=[
            PeriodicJob(
                "autorestart_sweep", autorestart_sweep, settings.autorestart_sweep_interval
            ),
            PeriodicJob("downgrade", downgrade, settings.stream_status_obsoleting_interval),
            PeriodicJob("reconcile", reconcile, settings.reconcile_interval),
            PeriodicJob("outbox_sweep", outbox_sweep, settings.change_sweep_interval),
            webhooks.periodic,
        ],
        background=(fleet_census, webhooks.pool_lifetime),
    )
