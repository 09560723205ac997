"""``python -m autorestart_worker``: run until SIGTERM or SIGINT."""

from __future__ import annotations

from autorestart_worker.jobs import spec
from shared.worker_runtime import main

if __name__ == "__main__":
    main("autorestart-worker", spec)
