"""Bounds on what clients hold: a connection cap, and timeouts for headers and bodies.

- ``LUNA_STREAMS_HEADER_TIMEOUT``: a connection that has not sent a whole request head within
  this many seconds of opening (or of its previous response) is closed. aiohttp's keep-alive
  timer runs from the start of the connection and closes one that is waiting for a request,
  so it is that timer, set to this value; idle keep-alive connections go after as long.
- ``LUNA_STREAMS_BODY_TIMEOUT``: a request body must arrive whole within this many seconds
  (:func:`gateway.parsing.read_json`).
- ``LUNA_STREAMS_MAX_CONNECTIONS``: connections beyond this many are closed as they open.
  Event subscribers hold their connections, so they may take only part of them
  (``LUNA_STREAMS_EVENTS_MAX_CONNECTIONS`` is kept below this cap, and
  ``LUNA_STREAMS_EVENTS_MAX_PER_CLIENT`` bounds one client's: :mod:`shared.services.event_hub`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("gateway.limits")


def cap_connections(server: web.Server, limit: int) -> None:
    """Close every connection opened while ``limit`` are open already."""
    opened = server.connection_made

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        opened(handler, transport)
        if len(server.connections) > limit:
            log.warning("connection closed: the cap of %d connections is reached", limit)
            transport.close()

    server.connection_made = connection_made  # type: ignore[method-assign]
