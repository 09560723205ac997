"""``python -m log_janitor``: run until SIGTERM or SIGINT."""

from __future__ import annotations

from log_janitor.jobs import spec
from shared.worker_runtime import main

if __name__ == "__main__":
    main("log-janitor", spec)
