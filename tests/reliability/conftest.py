"""Fixtures of the reliability tests.

schemathesis' pytest integration is synchronous (``requests``), so its gateway cannot share
the test's event loop: :class:`LiveGateway` runs the aiohttp app (and, optionally, a feedback
worker) on a loop of its own, in a daemon thread, on ``127.0.0.1`` and a free port.

The other modules share one in-process gateway and database per module (``module_client``,
``module_database``): their tests compare what they touch before and after, so a fresh
database per test would only cost time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.runtime.heartbeats import COMPONENTS, beat_forever
from shared.store.mongo import Database, open_database
from tests.isolation import drop_everything, isolated_settings

T = TypeVar("T")
Client = TestClient[Any, Any]

#: Each blocking step of the server thread (start, stop) must finish within this.
STEP_TIMEOUT = 60.0


class LiveGateway:
    """The gateway app on a real TCP port, served by a loop running in its own thread."""

    def __init__(self, settings: Settings, *, with_worker: bool) -> None:
        self.settings = settings
        self.with_worker = with_worker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.worker: FeedbackWorker | None = None
        self.heartbeats: list[asyncio.Task[None]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(STEP_TIMEOUT)

    def __enter__(self) -> LiveGateway:
        self.thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STEP_TIMEOUT)
            self.loop.close()

    async def _start(self) -> None:
        if self.with_worker:
            self.worker = FeedbackWorker(self.settings)
            await self.worker.start()
            assert self.worker.database is not None
            # the other workers of a full stack, as /healthcheck?include_luna_services=1 sees them
            self.heartbeats = [
                asyncio.create_task(beat_forever(self.worker.database, component))
                for component in COMPONENTS
            ]
        self.runner = web.AppRunner(create_app(self.settings), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def _stop(self) -> None:
        for task in self.heartbeats:
            task.cancel()
        await asyncio.gather(*self.heartbeats, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.worker is not None:
            await self.worker.stop(timeout=5)
        await drop_everything(self.settings)


@pytest.fixture(scope="module")
def live_gateway(mongo_uri: str, amqp_url: str) -> Iterator[LiveGateway]:
    """A gateway with a feedback worker, for the whole module."""
    settings = isolated_settings(mongo_uri, amqp_url, prefix="test_rel")
    with LiveGateway(settings, with_worker=True) as live:
        yield live


@pytest.fixture(scope="module")
def live_gateway_without_worker(mongo_uri: str, amqp_url: str) -> Iterator[LiveGateway]:
    """A gateway alone: no queue worker answers feedback (it times out after half a second),
    no other worker beats its heartbeat."""
    settings = isolated_settings(mongo_uri, amqp_url, prefix="test_rel", feedback_timeout=0.5)
    with LiveGateway(settings, with_worker=False) as live:
        yield live


# --- one in-process gateway per module (the hostile-input and isolation tests) --------------


@pytest_asyncio.fixture(scope="module")
async def module_settings(mongo_uri: str, amqp_url: str) -> AsyncIterator[Settings]:
    # A's webhook calls loopback (no worker delivers anything in these tests)
    settings = isolated_settings(
        mongo_uri,
        amqp_url,
        prefix="test_rel",
        feedback_timeout=5.0,
        webhook_allowed_networks="127.0.0.0/8",
    )
    yield settings
    await drop_everything(settings)


@pytest_asyncio.fixture(scope="module")
async def module_client(module_settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(module_settings))) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def module_database(module_settings: Settings) -> AsyncIterator[Database]:
    assert module_settings.mongo_uri is not None
    database = await open_database(module_settings.mongo_uri, module_settings.db_name)
    yield database
    await database.close()
