"""Preview endpoints against a real local HTTP server playing the agent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.core.settings import Settings
from shared.store.mongo import Database

Client = TestClient[Any, Any]
ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
OTHER_ACCOUNT = "8950722f-3fd4-4223-b48f-03f95f0e8dfb"
FRAME = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
BOUNDARY = "frame"
PARTS = [b"\xff\xd8\xff\xe0" + f"part-{n}".encode() * 50 + b"\xff\xd9" for n in range(4)]
SHORT_TIMEOUT = 0.5
SMALL_CAP = 1000


def mjpeg_part(payload: bytes, boundary: str = BOUNDARY) -> bytes:
    return (
        (
            f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
        + b"\r\n"
    )


def boundary_of(resp: Any) -> str:
    """The boundary the gateway frames a live preview with (its own, not the agent's)."""
    media, _, boundary = resp.headers["Content-Type"].partition("; boundary=")
    assert media == "multipart/x-mixed-replace" and boundary.startswith("luna-streams-")
    return boundary


@dataclass
class Agent:
    """What the agent saw, and the switches the tests flip."""

    base: str = ""
    release_last_part: asyncio.Event = field(default_factory=asyncio.Event)
    endless_done: asyncio.Event = field(default_factory=asyncio.Event)
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def agent_app(agent: Agent) -> web.Application:
    async def frame(request: web.Request) -> web.StreamResponse:
        agent.hits[request.path] += 1
        return web.Response(body=FRAME, content_type="image/jpeg")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/frame")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "image/jpeg"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"z")
            await asyncio.sleep(SHORT_TIMEOUT / 5)
        await response.write_eof()
        return response

    async def live(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "multipart/x-mixed-replace"
        response.headers["Content-Type"] = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        await response.prepare(request)
        for payload in PARTS[:-1]:
            await response.write(mjpeg_part(payload))
            await asyncio.sleep(0.02)
        await agent.release_last_part.wait()
        await response.write(mjpeg_part(PARTS[-1]))
        await response.write_eof()
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.headers["Content-Type"] = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        await response.prepare(request)
        try:
            while True:
                await response.write(mjpeg_part(PARTS[0]))
                await asyncio.sleep(0.01)
        finally:
            agent.endless_done.set()

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="agent is busy")

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(SHORT_TIMEOUT * 6)
        return web.Response(body=FRAME, content_type="image/jpeg")

    async def silent_live(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.headers["Content-Type"] = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        await response.prepare(request)
        await asyncio.sleep(SHORT_TIMEOUT * 6)
        return response

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * (SMALL_CAP + 1), content_type="image/jpeg")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "image/jpeg"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(4):
            await response.write(b"y" * (SMALL_CAP // 3))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/frame", frame)
    app.router.add_get("/live", live)
    app.router.add_get("/endless", endless)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/slow", slow)
    app.router.add_get("/silent-live", silent_live)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/trickle", trickle)
    return app


@contextlib.asynccontextmanager
async def serve_agent(app_of: Callable[[Agent], web.Application]) -> AsyncIterator[Agent]:
    """An agent on loopback: ``app_of``'s routes, answered with what it saw."""
    state = Agent()
    async with TestServer(app_of(state), host="127.0.0.1") as server:
        state.base = str(server.make_url("")).rstrip("/")
        yield state


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    async with serve_agent(agent_app) as state:
        yield state


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[Client]:
    """A gateway with a short preview timeout and a small preview size cap."""
    strict = settings.model_copy(
        update={"preview_timeout": SHORT_TIMEOUT, "preview_max_bytes": SMALL_CAP}
    )
    async with TestClient(TestServer(create_app(strict))) as test_client:
        yield test_client


async def create_stream(client: Client, account_id: str = ACCOUNT) -> str:
    body = {
        "account_id": account_id,
        "data": {"type": "tcp", "reference": "rtsp://camera/1"},
        "event_handler": {
            "bestshot_handler": {"handler_id": "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"},
            "authorization": {"account_id": account_id},
        },
    }
    resp = await client.post("/1/streams", json=body)
    assert resp.status == 201, await resp.text()
    stream_id: str = (await resp.json())["stream_id"]
    return stream_id


async def set_preview(
    database: Database, stream_id: str, *, live: str | None = None, last_frame: str | None = None
) -> None:
    preview = {
        kind: {"url": url}
        for kind, url in (("live", live), ("last_frame", last_frame))
        if url is not None
    }
    await database.streams.update_one({"_id": stream_id}, {"$set": {"preview": preview}})


def path(version: int, stream_id: str, kind: str, handler: bool = True) -> str:
    middle = "preview/handler" if handler else "preview"
    return f"/{version}/streams/{stream_id}/{middle}/{kind}"


async def error_of(resp: Any) -> tuple[int, int, str]:
    body = await resp.json()
    return resp.status, body["error_code"], body["detail"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("handler", [True, False])
async def test_last_frame_passes_bytes_and_type_through(
    client: Client, database: Database, agent: Agent, version: int, handler: bool
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, last_frame=agent.url("/frame"))
    resp = await client.get(path(version, stream_id, "last_frame", handler))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert await resp.read() == FRAME
    assert "Luna-Request-Id" in resp.headers


@pytest.mark.parametrize("handler", [True, False])
async def test_live_relays_parts_in_order_as_they_come(
    client: Client, database: Database, agent: Agent, handler: bool
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, live=agent.url("/live"))
    resp = await client.get(path(2, stream_id, "live", handler))
    assert resp.status == 200
    boundary = boundary_of(resp)
    assert "Luna-Request-Id" in resp.headers
    first_parts = b"".join(mjpeg_part(p, boundary) for p in PARTS[:-1])
    received = await resp.content.readexactly(len(first_parts))  # before the last part exists
    assert received == first_parts
    agent.release_last_part.set()
    assert await resp.read() == mjpeg_part(PARTS[-1], boundary) + f"--{boundary}--\r\n".encode()


async def test_live_stops_when_the_client_leaves(
    client: Client, database: Database, agent: Agent
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, live=agent.url("/endless"))
    resp = await client.get(path(1, stream_id, "live"))
    assert resp.status == 200
    first = mjpeg_part(PARTS[0], boundary_of(resp))
    assert (await resp.content.readexactly(len(first))) == first
    resp.close()
    await asyncio.wait_for(agent.endless_done.wait(), timeout=5)


@pytest.mark.parametrize("kind", ["last_frame", "live"])
@pytest.mark.parametrize("version", [1, 2])
async def test_no_preview_url(client: Client, database: Database, kind: str, version: int) -> None:
    stream_id = await create_stream(client)
    resp = await client.get(path(version, stream_id, kind))
    assert await error_of(resp) == (
        404,
        39009,
        f"Not found '{kind}' preview url for stream with id '{stream_id}'",
    )
    other = "live" if kind == "last_frame" else "last_frame"
    await set_preview(database, stream_id, **{other: "http://127.0.0.1:1/x"})
    resp = await client.get(path(version, stream_id, kind, handler=False))
    assert (await error_of(resp))[:2] == (404, 39009)


UNAVAILABLE = "Preview processing error, the preview is unavailable"


@pytest.mark.parametrize("kind", ["last_frame", "live"])
async def test_source_errors_are_one_39010_naming_no_internals(
    client: Client, database: Database, agent: Agent, kind: str
) -> None:
    """A closed port, a refusing source, a redirect, a bad URL: one and the same answer."""
    stream_id = await create_stream(client)
    for url in (
        agent.url("/unavailable"),
        agent.url("/redirect"),
        f"http://127.0.0.1:{closed_port()}/frame",
        "ftp://127.0.0.1/frame.jpg",
        "../dictionary",
        f"http://user:pass@127.0.0.1:{closed_port()}/frame",
        "http://localhost:1/frame",
    ):
        await set_preview(database, stream_id, **{kind: url})
        resp = await client.get(path(1, stream_id, kind))
        assert await error_of(resp) == (500, 39010, UNAVAILABLE), url
    assert agent.hits["/frame"] == 0  # the redirect was not followed


@pytest.mark.parametrize(("kind", "route"), [("last_frame", "/slow"), ("live", "/silent-live")])
async def test_source_timeout(
    strict_client: Client, database: Database, agent: Agent, kind: str, route: str
) -> None:
    stream_id = await create_stream(strict_client)
    await set_preview(database, stream_id, **{kind: agent.url(route)})
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await strict_client.get(path(2, stream_id, kind))
    assert await error_of(resp) == (500, 39010, UNAVAILABLE)
    assert loop.time() - started < SHORT_TIMEOUT * 4


@pytest.mark.parametrize("route", ["/big", "/big-chunked"])
async def test_last_frame_larger_than_the_cap(
    strict_client: Client, database: Database, agent: Agent, route: str
) -> None:
    stream_id = await create_stream(strict_client)
    await set_preview(database, stream_id, last_frame=agent.url(route))
    resp = await strict_client.get(path(1, stream_id, "last_frame"))
    assert await error_of(resp) == (500, 39010, UNAVAILABLE)
    await set_preview(database, stream_id, last_frame=agent.url("/frame"))  # 10 KiB > cap too
    resp = await strict_client.get(path(1, stream_id, "last_frame"))
    assert (await error_of(resp))[1] == 39010


async def test_last_frame_deadline_covers_a_trickling_source(
    strict_client: Client, database: Database, agent: Agent
) -> None:
    """A source sending a byte now and then never trips the read timeout; the overall
    deadline still holds."""
    stream_id = await create_stream(strict_client)
    await set_preview(database, stream_id, last_frame=agent.url("/trickle"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await strict_client.get(path(1, stream_id, "last_frame"))
    assert await error_of(resp) == (500, 39010, UNAVAILABLE)
    assert loop.time() - started < SHORT_TIMEOUT * 4


async def test_never_a_request_to_the_gateway_itself(
    settings: Settings, database: Database
) -> None:
    app = create_app(settings)
    seen: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.insert(0, count)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        stream_id = await create_stream(client)
        own = path(1, stream_id, "last_frame")
        for host in ("127.0.0.1", "127.0.0.2", "[::ffff:127.0.0.1]"):
            await set_preview(database, stream_id, last_frame=f"http://{host}:{client.port}{own}")
            seen.clear()
            resp = await client.get(own)
            assert await error_of(resp) == (500, 39010, UNAVAILABLE), host
            assert seen == [own], host  # the client's request, and nothing else
        # a request relayed by a gateway (this one or another) is not relayed again
        resp = await client.get(own, headers={"Via": "1.1 luna-streams"})
        assert await error_of(resp) == (500, 39010, UNAVAILABLE)


async def test_live_relay_ends_at_its_maximum_duration(
    settings: Settings, database: Database, agent: Agent
) -> None:
    limited = settings.model_copy(update={"preview_live_max_duration": 1.0})
    async with TestClient(TestServer(create_app(limited))) as client:
        stream_id = await create_stream(client)
        await set_preview(database, stream_id, live=agent.url("/endless"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await client.get(path(1, stream_id, "live"))
        assert resp.status == 200
        body = await asyncio.wait_for(resp.read(), timeout=10)
        assert body.startswith(mjpeg_part(PARTS[0], boundary_of(resp)))
        assert 1.0 <= loop.time() - started < 5
        await asyncio.wait_for(agent.endless_done.wait(), timeout=5)


async def test_live_relays_cannot_take_the_last_frame_pool(
    settings: Settings, database: Database, agent: Agent
) -> None:
    few = settings.model_copy(update={"preview_max_live": 2, "preview_max_connections": 2})
    async with TestClient(TestServer(create_app(few))) as client:
        stream_id = await create_stream(client)
        await set_preview(
            database, stream_id, live=agent.url("/endless"), last_frame=agent.url("/frame")
        )
        relays = [await client.get(path(1, stream_id, "live")) for _ in range(2)]
        assert [r.status for r in relays] == [200, 200]
        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await client.get(path(1, stream_id, "live"))  # a third: refused at once
        assert await error_of(resp) == (500, 39010, UNAVAILABLE)
        for _ in range(3):  # last frames still come, while both relays run
            resp = await client.get(path(1, stream_id, "last_frame"))
            assert resp.status == 200
            assert await resp.read() == FRAME
        assert loop.time() - started < 2
        for relay in relays:
            relay.close()


async def test_v1_account_scope(client: Client, database: Database, agent: Agent) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, last_frame=agent.url("/frame"))
    for kind in ("last_frame", "live"):
        resp = await client.get(path(1, stream_id, kind), params={"account_id": OTHER_ACCOUNT})
        assert await error_of(resp) == (404, 39001, f"Stream with id '{stream_id}' not found")
    resp = await client.get(path(1, stream_id, "last_frame"), params={"account_id": ACCOUNT})
    assert resp.status == 200
    assert await resp.read() == FRAME
    resp = await client.get(path(1, stream_id, "last_frame"), params={"account_id": "nope"})
    assert await error_of(resp) == (400, 12012, "Bad query parameters 'account_id'")


@pytest.mark.parametrize("version", [1, 2])
async def test_unknown_and_malformed_stream(client: Client, version: int) -> None:
    missing = "00000000-0000-4000-a000-000000642312"
    resp = await client.get(path(version, missing, "last_frame"))
    assert await error_of(resp) == (404, 39001, f"Stream with id '{missing}' not found")
    resp = await client.get(path(version, "not-a-uuid", "live"))
    assert (await error_of(resp))[:2] == (404, 12030)
