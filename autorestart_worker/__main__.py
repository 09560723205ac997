"""``python -m autorestart_worker``: the dramatiq worker through :mod:`shared.runtime.lifecycle`."""

from __future__ import annotations

from autorestart_worker.jobs import spec
from shared.core.settings import AutorestartWorkerSettings
from shared.runtime.job_worker import JobWorker
from shared.runtime.lifecycle import main


def build(settings: AutorestartWorkerSettings) -> JobWorker:
    return JobWorker(spec(settings), settings)


if __name__ == "__main__":
    main("autorestart-worker", AutorestartWorkerSettings, build)
