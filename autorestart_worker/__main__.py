"""``python -m autorestart_worker``: the dramatiq worker through :mod:`shared.lifecycle`."""

from __future__ import annotations

from autorestart_worker.jobs import spec
from shared.jobs import JobWorker
from shared.lifecycle import main
from shared.settings import AutorestartWorkerSettings


def build(settings: AutorestartWorkerSettings) -> JobWorker:
    return JobWorker(spec(settings), settings)


if __name__ == "__main__":
    main("autorestart-worker", AutorestartWorkerSettings, build)
