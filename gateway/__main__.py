"""``python -m gateway``: the HTTP API through :mod:`shared.runtime.lifecycle`, on aiohttp's own
runner (``web.AppRunner``): on SIGTERM readiness turns off at once, the site stops
listening, the requests in flight get up to ``LUNA_STREAMS_SHUTDOWN_TIMEOUT`` (aiohttp's
graceful shutdown: ``on_shutdown`` ends the event streams first), then the clients close."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NoReturn

from aiohttp import web

from gateway.app import create_app
from gateway.limits import cap_connections
from shared.core.settings import GatewaySettings, listen_address
from shared.runtime.lifecycle import Readiness, main, never_broken

log = logging.getLogger("gateway")


class Gateway:
    name = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.readiness = Readiness()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        settings = self.settings
        self.runner = web.AppRunner(
            create_app(settings, self.readiness),
            shutdown_timeout=settings.shutdown_timeout,
            access_log=None,  # gateway.middlewares writes the access log
        )
        await self.runner.setup()
        assert self.runner.server is not None
        cap_connections(self.runner.server, settings.max_connections)
        site = web.TCPSite(self.runner, settings.host, settings.port, reuse_port=True)
        await site.start()
        log.info("LUNA Streams API listening on %s", listen_address(settings.host, settings.port))

    async def broken(self) -> str:
        return await never_broken()  # the gateway reports its dependencies in /healthcheck

    async def stop_taking_work(self) -> None:
        if self.runner is not None:
            for site in list(self.runner.sites):
                await site.stop()

    async def finish(self, timeout: float) -> Mapping[str, int]:  # noqa: ASYNC109 - a bound
        server = self.runner.server if self.runner is not None else None
        open_connections = len(server.connections) if server is not None else 0
        await self.close()  # waits up to the runner's shutdown_timeout for handlers
        return {"connections drained": open_connections}

    async def close(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


def run() -> NoReturn:
    main("gateway", GatewaySettings, Gateway)


if __name__ == "__main__":
    run()
