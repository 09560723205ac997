"""Event subscribers cannot lock everyone out (issue 19): they are capped below the
connection cap, and per client address (the peer, or ``X-Forwarded-For`` from a trusted
proxy), so the rest of the API keeps answering however many of them come."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.limits import cap_connections
from shared.core.errors import EVENTS_RETRY_AFTER
from shared.core.settings import Settings
from tests.integration.factories import Client, create_stream, expect_error, v1_body

#: small caps: a connection cap of 8 leaves room for 2 event subscribers by default
CONNECTIONS = 8


def capped_settings(settings: Settings, **update: Any) -> Settings:
    """The test's settings with a small connection cap, validated again (the events cap
    follows from the connection cap unless given)."""
    values = settings.model_dump()
    values.pop("events_max_connections")
    values.update({"max_connections": CONNECTIONS, **update})
    return Settings(**values)


@contextlib.asynccontextmanager
async def capped_gateway(settings: Settings) -> AsyncIterator[Client]:
    """A gateway with its connection cap on, as ``python -m gateway`` runs it."""
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        assert client.server.runner is not None and client.server.runner.server is not None
        cap_connections(client.server.runner.server, settings.max_connections)
        yield client


async def subscribe_all(
    session: ClientSession, url: str, count: int, headers: dict[str, str] | None = None
) -> tuple[list[aiohttp.ClientResponse], list[int | str]]:
    """``count`` subscribers, one after the other; the open streams and every outcome
    (an HTTP status, or ``closed`` when the gateway dropped the connection)."""
    opened, outcomes = [], []
    for _ in range(count):
        try:
            resp = await session.get(url, headers=headers)
        except aiohttp.ClientError:
            outcomes.append("closed")
            continue
        outcomes.append(resp.status)
        if resp.status == 200:
            await resp.content.readline()  # the first line of the ready event: subscribed
            opened.append(resp)
        else:
            body = await resp.json()
            outcomes[-1] = f"{resp.status} {body['error_code']} {resp.headers.get('Retry-After')}"
    return opened, outcomes


def session() -> ClientSession:
    return ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=30))


async def test_subscribers_beyond_the_caps_leave_the_api_working(settings: Settings) -> None:
    capped = capped_settings(settings)
    assert capped.events_max_connections == 2  # a quarter of the connection cap
    async with capped_gateway(capped) as client, session() as subscribers:
        url = str(client.make_url("/1/streams/events"))
        opened, outcomes = await subscribe_all(subscribers, url, CONNECTIONS + 2)
        try:
            refused = f"503 2 {EVENTS_RETRY_AFTER}"
            assert outcomes == [200, 200] + [refused] * CONNECTIONS
            # the API still answers: the connection cap is not reached
            assert (await client.get("/version")).status == 200
            stream_id = await create_stream(client, v1_body())
            resp = await client.post(
                "/1/streams/processing/queue", json={"filters": {}, "limit": 1}
            )
            assert resp.status == 200, await resp.text()
            assert [s["stream_id"] for s in (await resp.json())["streams"]] == [stream_id]
        finally:
            for resp in opened:
                resp.close()


async def test_one_client_address_gets_its_own_cap(settings: Settings) -> None:
    capped = capped_settings(
        settings,
        max_connections=20,
        events_max_connections=4,
        events_max_per_client=2,
        trusted_proxies="127.0.0.1/32",
    )
    async with capped_gateway(capped) as client, session() as subscribers:
        url = str(client.make_url("/2/streams/events"))
        first = {"X-Forwarded-For": "10.0.0.1"}
        opened, outcomes = await subscribe_all(subscribers, url, 3, first)
        try:
            assert outcomes == [200, 200, f"429 12032 {EVENTS_RETRY_AFTER}"]
            resp = await subscribers.get(url, headers=first)
            body = await expect_error(resp, 429, 12032)
            assert "LUNA_STREAMS_EVENTS_MAX_PER_CLIENT" in body["detail"]
            # another client behind the same proxy has a cap of its own...
            more, outcomes = await subscribe_all(
                subscribers, url, 3, {"X-Forwarded-For": "10.0.0.2"}
            )
            opened += more
            assert outcomes == [200, 200, f"429 12032 {EVENTS_RETRY_AFTER}"]
            # ...and the gateway's cap still holds for a third one
            _, outcomes = await subscribe_all(subscribers, url, 1, {"X-Forwarded-For": "10.0.0.3"})
            assert outcomes == [f"503 2 {EVENTS_RETRY_AFTER}"]
        finally:
            for resp in opened:
                resp.close()


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(settings: Settings) -> None:
    capped = capped_settings(
        settings, max_connections=20, events_max_connections=4, events_max_per_client=2
    )
    async with capped_gateway(capped) as client, session() as subscribers:
        url = str(client.make_url("/1/streams/events"))
        opened: list[aiohttp.ClientResponse] = []
        outcomes: list[int | str] = []
        try:
            for n in range(3):  # three forged addresses, one peer: one client
                more, got = await subscribe_all(
                    subscribers, url, 1, {"X-Forwarded-For": f"10.0.0.{n}"}
                )
                opened += more
                outcomes += got
            assert outcomes == [200, 200, f"429 12032 {EVENTS_RETRY_AFTER}"]
        finally:
            for resp in opened:
                resp.close()
