"""Live stream events, v1 and v2: Server-Sent Events from :mod:`shared.services.event_hub`.

The handler parses the filters and the resume point, subscribes, and writes each event in
the route's stream view until the client leaves, falls too far behind (it is disconnected
and resumes with ``Last-Event-ID``) or the gateway stops.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import Api, Response
from gateway.keys import EVENTS, SETTINGS
from gateway.parsing import parse_query
from gateway.preview_client import policy_of
from shared.core.errors import BadLastEventId, EventSubscribersLimit, EventSubscribersPerClientLimit
from shared.domain.filters import QueryUUID
from shared.domain.request_id import HEADER
from shared.services.event_hub import Subscription
from shared.services.events import MAX_EVENT_ID, EventFilter, sse_frame
from shared.telemetry.log_setup import request_id_var

log = logging.getLogger("gateway.events")

api = Api(tag="events")

LAST_EVENT_ID = "Last-Event-ID"
#: how long a browser waits before it reconnects, in milliseconds
RETRY_MS = 2000
KEEPALIVE = b": keep-alive\n\n"
#: how often an idle subscription checks that its client is still connected, in seconds
POLL = 1.0

DESCRIPTION = f"""\
Server-Sent Events (`text/event-stream`) of stream changes, in this API version's stream view:

- `ready`: sent first; its id is the point the subscription starts after.
- `created`: a stream was created.
- `changed`: a stream's status, version, settings, error, video info, preview, groups or
  description changed (by the API, an agent's feedback, autorestart or the handler-lost
  watchdog); `changed` lists the fields.
- `deleted`: a stream was removed (`stream` is null, `status` is `deleted`).

Every event's `data` is JSON: `event`, `stream_id`, `account_id`, `time`, `changed`, `status`,
`version`, `stream` (read just after the change, with the status, version, name, description
and last error this change wrote). Its `id` is a change-stream resume token: reconnect with the
`Last-Event-ID` header (browsers do so by themselves) or `last_event_id` to get every event
after it, none lost and none repeated, from this gateway or another one of the same database. A
subscriber that falls `LUNA_STREAMS_EVENTS_BUFFER` events behind is disconnected and resumes
the same way. `: keep-alive` comments come every `LUNA_STREAMS_EVENTS_KEEPALIVE` seconds. A
gateway serves at most `LUNA_STREAMS_EVENTS_MAX_CONNECTIONS` subscribers (one more: 503,
error code 2), and at most `LUNA_STREAMS_EVENTS_MAX_PER_CLIENT` of them from one client address
(one more: 429, error code 12032); both answers carry `Retry-After`. Needs a database with
change streams (a MongoDB replica set, or the embedded server).
Event ids are at most {MAX_EVENT_ID} hexadecimal characters.
"""


#: one event of the stream, as OpenAPI 3.1 describes an event stream (a schema per event)
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["ready", "created", "changed", "deleted"]},
        "data": {
            "type": "string",
            "description": "JSON: event, stream_id, account_id, time, changed, status, "
            "version, stream (null when deleted); `{}` for ready",
        },
        "id": {"type": "string", "description": "Resume token: the Last-Event-ID to resume"},
        "retry": {"type": "integer"},
    },
}


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: QueryUUID | None = Field(
        default=None, description="Only the events of this account's streams."
    )
    stream_ids: list[QueryUUID] | None = Field(
        default=None, max_length=1000, description="Only the events of these streams."
    )
    last_event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EVENT_ID,
        pattern=r"^x?[0-9a-fA-F]+$",
        description="Resume after this event id (the `Last-Event-ID` header wins).",
    )


def _last_event_id(request: web.Request, query: EventsQuery) -> str | None:
    given = request.headers.get(LAST_EVENT_ID)
    if given is None:
        return query.last_event_id
    given = given.strip()
    if not given:  # browsers send an empty one when they have no id yet
        return None
    if len(given) > MAX_EVENT_ID:
        raise BadLastEventId(reason=f"longer than {MAX_EVENT_ID} characters")
    return given


def _client(request: web.Request) -> str:
    """The subscriber's address, as the preview policy tells senders apart: the peer, or
    the ``X-Forwarded-For`` address a trusted proxy gave."""
    forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
    sender = policy_of(request.app[SETTINGS]).sender(request.remote, forwarded)
    return str(sender) if sender is not None else f"unknown {request.remote}"


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _relay(
    request: web.Request, response: web.StreamResponse, subscription: Subscription, version: int
) -> None:
    keepalive = request.app[SETTINGS].events_keepalive
    poll = min(POLL, keepalive)
    await response.write(
        f"retry: {RETRY_MS}\n".encode() + sse_frame("ready", "{}", subscription.position)
    )
    idle = 0.0
    while True:
        try:
            event = await subscription.next(poll)
        except Subscription.Dropped:
            return
        if event is None:
            if _gone(request):  # a subscriber that left frees its slot within POLL
                return
            idle += poll
            if idle >= keepalive:
                await response.write(KEEPALIVE)
                idle = 0.0
            continue
        payload = event.payload(version)
        if payload is not None:
            await response.write(sse_frame(event.kind, payload, event.event_id))


def add_event_routes(version: int) -> None:
    async def stream_events(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, EventsQuery)
        event_filter = EventFilter(
            account_id=query.account_id,
            stream_ids=frozenset(query.stream_ids) if query.stream_ids is not None else None,
        )
        last_event_id = _last_event_id(request, query)
        hub = request.app[EVENTS]
        async with hub.subscribe(event_filter, last_event_id, _client(request)) as subscription:
            response = web.StreamResponse()
            response.headers[hdrs.CONTENT_TYPE] = "text/event-stream; charset=utf-8"
            response.headers[hdrs.CACHE_CONTROL] = "no-cache"
            response.headers["X-Accel-Buffering"] = "no"
            request_id = request_id_var.get()
            if request_id is not None:  # the middleware cannot add it once headers are sent
                response.headers[HEADER] = request_id
            transport = request.transport
            if transport is not None:
                # a subscriber too far behind: drop what it has not read, it resumes by id
                subscription.on_overflow = transport.abort
            await response.prepare(request)
            try:
                await _relay(request, response, subscription, version)
            except ConnectionError as exc:  # aiohttp's ClientConnectionResetError on write
                log.debug("event subscriber left: %r", exc)
        return response

    api.add(
        "GET",
        f"/{version}/streams/events",
        stream_events,
        summary="Subscribe to stream changes (Server-Sent Events, resumable)",
        description=DESCRIPTION,
        query=EventsQuery,
        responses={
            200: Response(
                "An endless event stream", content_type="text/event-stream", schema=EVENT_SCHEMA
            )
        },
        errors=(BadLastEventId, EventSubscribersLimit, EventSubscribersPerClientLimit),
        headers={
            LAST_EVENT_ID: {
                "required": False,
                "description": "The id of the last event received: resume after it.",
                "schema": {"type": "string", "maxLength": MAX_EVENT_ID},
            }
        },
        operation_id=f"getStreamEventsV{version}",
    )


for _version in (1, 2):
    add_event_routes(_version)
