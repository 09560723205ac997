"""The ``Host`` check (issue 19): a gateway bound to loopback answers only requests that name
it by a loopback name, so a web page whose name was rebound to 127.0.0.1 (DNS rebinding)
cannot drive it from a browser; ``LUNA_STREAMS_ALLOWED_HOSTS`` names the hosts otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.fast.stub_gateway import open_gateway
from tests.integration.factories import Client, expect_error, v1_body

GIVEN_ID = "1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a"


@contextlib.asynccontextmanager
async def gateway_with(settings: Settings, **update: Any) -> AsyncIterator[Client]:
    """A gateway of ``settings`` changed by ``update``, validated again (the allowed hosts
    follow from the bind address unless given)."""
    values = settings.model_dump()
    values.pop("allowed_hosts")
    values.update(update)
    async with open_gateway(Settings(**values)) as client:
        yield client


async def status_for(client: Client, host: str) -> int:
    resp = await client.get("/version", headers={"Host": host})
    return resp.status


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:5160", "127.0.0.1", "127.0.0.1:80", "[::1]", "[::1]:5160"]
)
async def test_a_loopback_gateway_answers_loopback_names(settings: Settings, host: str) -> None:
    async with gateway_with(settings, host="127.0.0.1") as client:
        assert await status_for(client, host) == 200


@pytest.mark.parametrize(
    "host", ["rebound.example.com", "rebound.example.com:5160", "10.0.0.1", "[::2]", "a:b:c"]
)
async def test_a_loopback_gateway_refuses_other_names(
    settings: Settings, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with gateway_with(settings, host="127.0.0.1") as client:
        resp = await client.get("/", headers={"Host": host, "Luna-Request-Id": GIVEN_ID})
        body = await expect_error(resp, 400, 12031)
        assert body["detail"] == (
            f"Bad header 'Host': '{host}' is not an allowed host (LUNA_STREAMS_ALLOWED_HOSTS)"
        )
        # the request id is echoed and the request logged, as for any other answer
        assert resp.headers["Luna-Request-Id"] == GIVEN_ID
        (line,) = [r for r in caplog.records if r.name == "gateway.access"]
        assert (line.path, line.status, line.request_id) == ("/", 400, GIVEN_ID)  # type: ignore[attr-defined]


async def test_a_refused_host_writes_nothing(settings: Settings, database: Database) -> None:
    async with gateway_with(settings, host="127.0.0.1") as client:
        resp = await client.post("/1/streams", json=v1_body(), headers={"Host": "evil.example"})
        await expect_error(resp, 400, 12031)
        assert await database.streams.count_documents({}) == 0
        resp = await client.post("/1/streams", json=v1_body())  # the test client: 127.0.0.1
        assert resp.status == 201, await resp.text()
        assert await database.streams.count_documents({}) == 1


async def test_a_gateway_on_every_interface_answers_any_name(settings: Settings) -> None:
    async with gateway_with(settings, host="0.0.0.0") as client:
        assert await status_for(client, "luna.example.com") == 200
        assert await status_for(client, "10.0.0.1:5160") == 200


async def test_allowed_hosts_name_the_hosts(settings: Settings) -> None:
    async with gateway_with(
        settings, host="0.0.0.0", allowed_hosts="luna.example.com,10.0.0.1"
    ) as client:
        assert await status_for(client, "LUNA.example.com.:5160") == 200
        assert await status_for(client, "10.0.0.1") == 200
        assert await status_for(client, "localhost") == 400
        assert await status_for(client, "other.example.com") == 400
    async with gateway_with(settings, host="127.0.0.1", allowed_hosts="*") as client:
        assert await status_for(client, "rebound.example.com") == 200


async def test_a_request_without_host_is_not_a_browsers(settings: Settings) -> None:
    """HTTP/1.0 may leave ``Host`` out; a browser never does."""
    async with gateway_with(settings, host="127.0.0.1") as client:
        assert client.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(b"GET /version HTTP/1.0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # HTTP/1.0: the server closes
        head = answer.split(b"\r\n", 1)[0] + b"\r\n"
        writer.close()
        assert head.startswith(b"HTTP/1.0 200"), head
