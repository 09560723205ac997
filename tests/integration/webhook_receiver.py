"""A real HTTP server on loopback that receives webhook deliveries, for the tests.

Each path behaves as the test asks: ``/ok`` answers 204, ``/flaky`` answers 500 the first
``fail_first`` times then 200, ``/hang`` answers only after ``hang_for`` seconds (longer
than the worker's timeout). Every request is recorded with its path, headers, body and the
time it arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 3
    hang_for: float = 30.0
    received: list[Received] = field(default_factory=list)
    _flaky: int = 0

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(request.path, dict(request.headers), await request.read(), time.monotonic())
        )
        if request.path == "/flaky":
            self._flaky += 1
            return web.Response(status=500 if self._flaky <= self.fail_first else 200)
        if request.path == "/hang":
            await asyncio.sleep(self.hang_for)
        return web.Response(status=204)


@asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[Receiver]:
    found = Receiver(**options)
    app = web.Application()
    app.router.add_route("POST", "/{path:.*}", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


def signature_valid(secret: str, received: Received, tolerance: float = 300) -> bool:
    """The check a receiver makes, written out here rather than imported from the code
    under test: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, ``t`` recent."""
    parts = dict(p.split("=", 1) for p in received.headers["X-Luna-Streams-Signature"].split(","))
    if abs(time.time() - int(parts["t"])) > tolerance:
        return False
    signed = parts["t"].encode() + b"." + received.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])
