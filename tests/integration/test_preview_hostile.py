"""A hostile agent's previews: nothing it serves runs on the gateway's origin.

An attacker acting as an agent served ``text/html`` (and SVG) as its last frame; the
gateway relayed it as such, without CSP or nosniff, and the page, opened in a tab, read
``/1/streams``. Previews are relayed only as JPEG, PNG or WebP, checked by their bytes as
well as their header, with ``nosniff`` and a CSP that allows nothing; anything else is
39010. A real local HTTP server plays the agent.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from shared.store.mongo import Database
from tests.integration.test_preview import (
    BOUNDARY,
    FRAME,
    PARTS,
    UNAVAILABLE,
    Agent,
    Client,
    boundary_of,
    create_stream,
    error_of,
    mjpeg_part,
    path,
    serve_agent,
    set_preview,
)

SCRIPT = b"<html><script>fetch('/1/streams').then(r => r.text()).then(alert)</script></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBP = b"RIFF\x40\x00\x00\x00WEBPVP8 " + b"\x00" * 64
#: (route, body, Content-Type) of last frames that are not relayed
NOT_IMAGES = [
    ("html", SCRIPT, "text/html"),
    ("svg", SVG, "image/svg+xml"),
    ("html-as-jpeg", SCRIPT, "image/jpeg"),  # a lying header
    ("svg-as-png", SVG, "image/png"),
    ("jpeg-as-html", FRAME, "text/html"),  # an image, said to be a page
    ("jpeg-untyped", FRAME, "application/octet-stream"),
    ("png-as-jpeg", PNG, "image/jpeg"),
    ("gif", b"GIF89a" + b"\x00" * 32, "image/gif"),
    ("empty", b"", "image/jpeg"),
]
IMAGES = [("jpeg", FRAME, "image/jpeg"), ("png", PNG, "image/png"), ("webp", WEBP, "image/webp")]
CSP = "default-src 'none'; sandbox"


def part(payload: bytes, content_type: str) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
    return head.encode() + b"\r\n" + payload + b"\r\n"


def hostile_agent_app(agent: Agent) -> web.Application:
    app = web.Application()

    def serving(body: bytes, content_type: str, **headers: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            agent.hits[request.path] += 1
            return web.Response(body=body, headers={"Content-Type": content_type, **headers})

        return handler

    for route, body, content_type in [*NOT_IMAGES, *IMAGES]:
        app.router.add_get(f"/{route}", serving(body, content_type))
    app.router.add_get(
        "/jpeg-gzipped", serving(gzip.compress(FRAME), "image/jpeg", **{"Content-Encoding": "gzip"})
    )

    def live(
        *parts: bytes, content_type: str = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    ) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            await response.prepare(request)
            for chunk in parts:
                await response.write(chunk)
            await response.write_eof()
            return response

        return handler

    app.router.add_get("/live-html", live(SCRIPT, content_type="text/html"))
    app.router.add_get("/live-html-part", live(part(SCRIPT, "text/html")))
    app.router.add_get("/live-lying-part", live(part(SCRIPT, "image/jpeg")))
    app.router.add_get("/live-svg-part", live(part(SVG, "image/svg+xml")))
    app.router.add_get(
        "/live-then-html",
        live(mjpeg_part(PARTS[0]), part(SCRIPT, "text/html"), mjpeg_part(PARTS[1])),
    )
    app.router.add_get(
        "/live-then-lying",
        live(mjpeg_part(PARTS[0]), part(SCRIPT, "image/jpeg"), mjpeg_part(PARTS[1])),
    )
    app.router.add_get(
        "/live-planted-boundary",
        # an image whose bytes hold what looks like the next part's start
        live(mjpeg_part(PARTS[0] + b"\r\n--" + BOUNDARY.encode() + b"\r\n\r\n" + SCRIPT)),
    )
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[Agent]:
    async with serve_agent(hostile_agent_app) as state:
        yield state


def assert_safe_headers(resp: Any) -> None:
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert "Content-Encoding" not in resp.headers


@pytest.mark.parametrize("version", [1, 2])
async def test_last_frame_that_is_not_an_image_is_refused(
    client: Client, database: Database, hostile: Agent, version: int
) -> None:
    stream_id = await create_stream(client)
    for route in [r for r, _, _ in NOT_IMAGES] + ["jpeg-gzipped"]:
        await set_preview(database, stream_id, last_frame=hostile.url(f"/{route}"))
        resp = await client.get(path(version, stream_id, "last_frame"))
        assert await error_of(resp) == (500, 39010, UNAVAILABLE), route
        assert hostile.hits[f"/{route}"] >= 1, route  # fetched, and refused


@pytest.mark.parametrize(("route", "body", "content_type"), IMAGES, ids=[i[0] for i in IMAGES])
async def test_images_are_relayed_with_safe_headers(
    client: Client, database: Database, hostile: Agent, route: str, body: bytes, content_type: str
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, last_frame=hostile.url(f"/{route}"))
    resp = await client.get(path(1, stream_id, "last_frame"))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert_safe_headers(resp)
    assert await resp.read() == body


@pytest.mark.parametrize(
    "route", ["live-html", "live-html-part", "live-lying-part", "live-svg-part", "html"]
)
async def test_live_preview_that_does_not_start_with_an_image_is_refused(
    client: Client, database: Database, hostile: Agent, route: str
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, live=hostile.url(f"/{route}"))
    resp = await client.get(path(2, stream_id, "live"))
    assert await error_of(resp) == (500, 39010, UNAVAILABLE)


@pytest.mark.parametrize("route", ["live-then-html", "live-then-lying"])
async def test_live_relay_ends_at_the_first_part_that_is_not_an_image(
    client: Client, database: Database, hostile: Agent, route: str
) -> None:
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, live=hostile.url(f"/{route}"))
    resp = await client.get(path(1, stream_id, "live"))
    assert resp.status == 200
    assert_safe_headers(resp)
    boundary = boundary_of(resp)
    body = await resp.read()
    assert body == mjpeg_part(PARTS[0], boundary) + f"--{boundary}--\r\n".encode()
    assert b"<script>" not in body


async def test_live_parts_are_framed_by_the_gateway(
    client: Client, database: Database, hostile: Agent
) -> None:
    """An image holding the agent's boundary is one part still: the gateway's own boundary
    is one the agent cannot know."""
    stream_id = await create_stream(client)
    await set_preview(database, stream_id, live=hostile.url("/live-planted-boundary"))
    resp = await client.get(path(1, stream_id, "live"))
    assert resp.status == 200
    boundary = boundary_of(resp)
    assert boundary != BOUNDARY
    image = PARTS[0] + b"\r\n--" + BOUNDARY.encode() + b"\r\n\r\n" + SCRIPT
    assert await resp.read() == mjpeg_part(image, boundary) + f"--{boundary}--\r\n".encode()
