"""A small Server-Sent Events reader for the tests (what a browser's EventSource does)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientResponse


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: str
    id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Reads the events of one open ``text/event-stream`` response, in order."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def next(self, within: float = 15.0) -> Event:
        return await asyncio.wait_for(self._next(), within)

    async def _next(self) -> Event:
        fields: dict[str, list[str]] = {}
        while True:
            try:
                raw = await self.response.content.readline()
            except ClientError as exc:  # the server closed the connection
                raise EOFError(f"the event stream was cut: {exc!r}") from exc
            if not raw:
                raise EOFError("the event stream ended")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if "data" in fields:
                    event_id = fields.get("id", [self.last_id])[-1]
                    self.last_id = event_id
                    name = fields.get("event", ["message"])[-1]
                    return Event(name, "\n".join(fields["data"]), event_id)
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))

    async def until(self, kind: str, stream_id: str, within: float = 15.0) -> Event:
        """Skip events up to the first ``kind`` event of ``stream_id``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            event = await self.next(max(0.1, deadline - loop.time()))
            if event.event == kind and event.json["stream_id"] == stream_id:
                return event

    async def collect(self, count: int, within: float = 20.0) -> list[Event]:
        return [await self.next(within) for _ in range(count)]
