"""A gateway whose RabbitMQ is a :class:`~tests.stub_broker.StubServer`, under aiohttp's test
client: the fast tier's way to build one (its ``client`` fixture, or this for settings of a
test's own)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

import gateway.app
from shared.core.settings import Settings
from tests.stub_broker import StubBroker
from tests.stub_rabbitmq import StubServer

Client = TestClient[Any, Any]


@contextlib.asynccontextmanager
async def open_gateway(
    settings: Settings,
    server: StubServer | None = None,
    broker: StubBroker | None = None,
    **server_args: Any,
) -> AsyncIterator[Client]:
    """A gateway on ``settings`` using ``broker``, else a broker of its own on ``server`` (a
    new one if not given), as another gateway process would have; the gateway closes before
    its broker, a broker given stays open."""
    own = broker is None
    if broker is None:
        broker = await StubBroker.open(
            settings.queue_prefix, server or StubServer(), queue_type=settings.queue_type
        )
    app = gateway.app.create_app(settings, broker=broker)  # type: ignore[arg-type]
    try:
        async with TestClient(TestServer(app, **server_args)) as test_client:
            yield test_client
    finally:
        if own:
            await broker.close()
