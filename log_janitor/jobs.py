"""The janitor's one periodic job."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import now_utc
from shared.jobs_broker import JANITOR
from shared.settings import Settings
from shared.stream_logs import StreamLogService
from shared.worker_runtime import JobContext, PeriodicJob, WorkerSpec


async def clear_logs(context: JobContext) -> int:
    interval = context.settings.logs_clear_interval
    if not interval.active:
        return 0
    bound = now_utc() - timedelta(seconds=interval.max_age_seconds)
    return await StreamLogService(await context.database()).delete_older_than(bound)


def spec(settings: Settings) -> WorkerSpec:
    return WorkerSpec(
        component="log-janitor",
        queue=JANITOR,
        periodic=[
            PeriodicJob("clear_logs", clear_logs, settings.logs_clear_interval.check_interval)
        ],
    )
