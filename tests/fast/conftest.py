"""The fast tier: the gateway's HTTP layer over an in-memory broker, no RabbitMQ.

Every gateway here is built by :func:`tests.fast.stub_gateway.open_gateway` with a
:class:`~tests.stub_broker.StubBroker` (``create_app(..., broker=...)``); its settings name a
closed port as RabbitMQ's URL, so a connection made by mistake fails at once instead of
reaching a server. The fixtures that bring RabbitMQ (``amqp_url``, ``queue_worker``) are
refused here (:mod:`tests.no_rabbitmq`): a test that needs them belongs in
``tests/integration``. MongoDB is the session's real one (``mongo_uri``), a fresh database
per test.

Run with ``make test-fast`` (with ``tests/unit``); ``make test`` runs it too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import gateway.app
from gateway.docs import DocsBundle, build_docs
from shared.core.settings import Settings
from tests.fast.stub_gateway import Client, open_gateway
from tests.isolation import drop_database, isolated_settings
from tests.no_rabbitmq import amqp_url, queue_worker  # noqa: F401 - refused here
from tests.stub_broker import StubBroker
from tests.stub_rabbitmq import StubServer

#: nothing listens there: a RabbitMQ connection attempted by mistake is refused at once
CLOSED_AMQP = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture(scope="package", autouse=True)
def _docs_built_once() -> Iterator[None]:
    """The OpenAPI document and the manual are the same for every gateway of the tier:
    built once (by the gateway's own ``build_docs``) instead of ~0.7 s per app. Only while
    the tier runs: later tests (the secrets test reads what a gateway's start logs) get the
    gateway as it is."""
    built: dict[str, DocsBundle] = {}

    def docs_once(spec: dict[str, Any]) -> DocsBundle:
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in built:
            built[key] = build_docs(spec)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gateway.app, "build_docs", docs_once)
        yield


@pytest.fixture
async def settings(mongo_uri: str) -> AsyncIterator[Settings]:
    """Settings isolated to this test: its own database and its own queue names."""
    settings = isolated_settings(mongo_uri, CLOSED_AMQP, feedback_timeout=5.0)
    yield settings
    await drop_database(settings)


@pytest.fixture
def stub_server() -> StubServer:
    """This test's RabbitMQ, in memory: every gateway of the test shares it."""
    return StubServer()


@pytest.fixture
async def broker(settings: Settings, stub_server: StubServer) -> AsyncIterator[StubBroker]:
    """The broker of the ``client`` gateway."""
    stub = await StubBroker.open(settings.queue_prefix, stub_server, queue_type=settings.queue_type)
    yield stub
    await stub.close()


@pytest.fixture
async def client(
    settings: Settings, stub_server: StubServer, broker: StubBroker
) -> AsyncIterator[Client]:
    async with open_gateway(settings, stub_server, broker) as test_client:
        yield test_client
