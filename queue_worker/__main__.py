"""``python -m queue_worker``: consume feedback until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from queue_worker.worker import FeedbackWorker
from shared.log_setup import setup_logging
from shared.settings import Settings, load_settings

log = logging.getLogger("queue_worker")


async def serve(settings: Settings) -> int:
    worker = FeedbackWorker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a SIGTERM then stops cleanly
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    stopping = asyncio.create_task(stop.wait())
    stalled = asyncio.create_task(worker.watch(settings.consumer_stall_timeout))
    await asyncio.wait({stopping, stalled}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopping, stalled):
        task.cancel()
    await worker.stop(settings.shutdown_timeout)
    return 0 if stop.is_set() else 1


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, "queue-worker")
    try:
        code = asyncio.run(serve(settings))
    except Exception as exc:
        log.error("queue worker failed: %s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
