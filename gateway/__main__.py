"""``python -m gateway``: serve the API until SIGTERM or SIGINT, then drain and stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.app import create_app
from gateway.keys import LIFECYCLE, Lifecycle
from gateway.limits import cap_connections
from shared.log_setup import setup_logging
from shared.settings import Settings, load_settings

log = logging.getLogger("gateway")


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout, access_log=None)
    await runner.setup()
    assert runner.server is not None
    cap_connections(runner.server, settings.max_connections)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
    await site.start()
    log.info("LUNA Streams API listening on http://%s:%d", settings.host, settings.port)
    lifecycle = app[LIFECYCLE]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, lifecycle, sig)
    await lifecycle.stopping.wait()
    log.info("draining (up to %.0f s)", settings.shutdown_timeout)
    await runner.cleanup()
    log.info("stopped")


def _stop(lifecycle: Lifecycle, sig: signal.Signals) -> None:
    log.info("%s received: readiness off, stopping", sig.name)
    lifecycle.ready = False
    lifecycle.stopping.set()


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, "gateway")
    try:
        asyncio.run(serve(settings))
    except Exception as exc:  # one clear line for start-up failures (no DB, no broker)
        log.error("gateway failed: %s: %s", type(exc).__name__, exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
