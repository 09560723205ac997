"""``python -m log_janitor``: the dramatiq worker through :mod:`shared.runtime.lifecycle`."""

from __future__ import annotations

from log_janitor.jobs import spec
from shared.core.settings import LogJanitorSettings
from shared.runtime.job_worker import JobWorker
from shared.runtime.lifecycle import main


def build(settings: LogJanitorSettings) -> JobWorker:
    return JobWorker(spec(settings), settings)


if __name__ == "__main__":
    main("log-janitor", LogJanitorSettings, build)
