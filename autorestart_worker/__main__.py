"""``python -m autorestart_worker``: run until SIGTERM or SIGINT."""

from __future__ import annotations

import logging

from autorestart_worker.jobs import spec
from shared.log_setup import setup_logging
from shared.settings import load_settings
from shared.worker_runtime import run_worker

log = logging.getLogger("autorestart_worker")


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, "autorestart-worker")
    try:
        code = run_worker(spec(settings), settings)
    except Exception as exc:
        log.error("autorestart worker failed: %s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
