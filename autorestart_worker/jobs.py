"""What the autorestart worker runs: one actor and four periodic jobs."""

from __future__ import annotations

from shared.autorestart import restart_due, restart_stream
from shared.downgrade import downgrade_silent
from shared.jobs_broker import AUTORESTART, RESTART_STREAM
from shared.reconciler import reconcile_tokens
from shared.settings import Settings
from shared.tokens import BrokerTokenPublisher
from shared.worker_runtime import JobContext, PeriodicJob, WorkerSpec


async def restart_stream_actor(
    context: JobContext, stream_id: str, version: int, attempt: int
) -> bool:
    database = await context.database()
    return await restart_stream(database, await context.changes(), stream_id, version, attempt)


async def autorestart_sweep(context: JobContext) -> int:
    return await restart_due(await context.database(), await context.changes())


async def downgrade(context: JobContext) -> int:
    return await downgrade_silent(
        await context.database(),
        await context.changes(),
        context.settings.stream_status_obsoleting_period,
    )


async def reconcile(context: JobContext) -> int:
    broker = await context.broker()
    return await reconcile_tokens(
        await context.database(),
        broker,
        BrokerTokenPublisher(broker),
        grace=context.settings.reconcile_interval,
    )


async def outbox_sweep(context: JobContext) -> int:
    return await (await context.changes()).sweep()


def spec(settings: Settings) -> WorkerSpec:
    return WorkerSpec(
        component="autorestart-worker",
        queue=AUTORESTART,
        periodic=[
            PeriodicJob(
                "autorestart_sweep", autorestart_sweep, settings.autorestart_sweep_interval
            ),
            PeriodicJob("downgrade", downgrade, settings.stream_status_obsoleting_interval),
            PeriodicJob("reconcile", reconcile, settings.reconcile_interval),
            PeriodicJob("outbox_sweep", outbox_sweep, settings.reconcile_interval),
        ],
        actors={RESTART_STREAM: restart_stream_actor},
    )
