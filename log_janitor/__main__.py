"""``python -m log_janitor``: run until SIGTERM or SIGINT."""

from __future__ import annotations

import logging

from log_janitor.jobs import spec
from shared.log_setup import setup_logging
from shared.settings import load_settings
from shared.worker_runtime import run_worker

log = logging.getLogger("log_janitor")


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, "log-janitor")
    try:
        code = run_worker(spec(settings), settings)
    except Exception as exc:
        log.error("log janitor failed: %s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
