"""``python -m queue_worker``: consume feedback through
:mod:`shared.runtime.lifecycle` until SIGTERM
or SIGINT (or until the consumer stalls: exit code 1, for the supervisor to restart it)."""

from __future__ import annotations

from typing import NoReturn

from queue_worker.worker import FeedbackWorker
from shared.core.settings import QueueWorkerSettings
from shared.runtime.lifecycle import main


def run() -> NoReturn:
    main("queue-worker", QueueWorkerSettings, FeedbackWorker)


if __name__ == "__main__":
    run()
