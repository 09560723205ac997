"""``python -m log_janitor``: the dramatiq worker through :mod:`shared.lifecycle`."""

from __future__ import annotations

from log_janitor.jobs import spec
from shared.jobs import JobWorker
from shared.lifecycle import main
from shared.settings import LogJanitorSettings


def build(settings: LogJanitorSettings) -> JobWorker:
    return JobWorker(spec(settings), settings)


if __name__ == "__main__":
    main("log-janitor", LogJanitorSettings, build)
