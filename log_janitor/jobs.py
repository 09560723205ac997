"""The janitor's one periodic job, a dramatiq actor."""

from __future__ import annotations

from datetime import timedelta

from shared.core.clock import now_utc
from shared.core.settings import LogJanitorSettings
from shared.runtime.job_worker import JANITOR, JobClients, JobWorkerSpec, PeriodicJob
from shared.services.logs import StreamLogService
from shared.telemetry.metrics import LOG_ROWS_REMOVED


def spec(settings: LogJanitorSettings) -> JobWorkerSpec:
    interval = settings.logs_clear_interval

    async def clear_logs(clients: JobClients) -> int:
        if not interval.active:
            return 0
        bound = now_utc() - timedelta(seconds=interval.max_age_seconds)
        removed = await StreamLogService(clients.database).delete_older_than(bound)
        LOG_ROWS_REMOVED.inc(removed)
        return removed

    return JobWorkerSpec(
        component="log-janitor",
        kind=JANITOR,
        periodic=[PeriodicJob("clear_logs", clear_logs, interval.check_interval)],
    )
