"""Preview routes, v1 and v2: the stream's last frame and live preview, fetched from the
URLs its agent reported in feedback.

``last_frame`` is read whole (at most ``LUNA_STREAMS_PREVIEW_MAX_BYTES``, within
``LUNA_STREAMS_PREVIEW_TIMEOUT``) and answered with the source's content type. ``live`` is
relayed chunk by chunk as it arrives (``multipart/x-mixed-replace`` MJPEG, typically) until
the client or the source closes, the source is silent for ``LUNA_STREAMS_PREVIEW_TIMEOUT``,
or ``LUNA_STREAMS_PREVIEW_LIVE_MAX_DURATION`` has passed. A failure before anything was
sent is 39010 "the preview is unavailable" (the reason is logged, never shown); once the
relay has started it just ends. The requests themselves: :mod:`gateway.preview_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import hdrs, web

from gateway.api import Api, Handler, Response
from gateway.keys import DATABASE, PREVIEWS, SETTINGS
from gateway.parsing import parse_query, path_uuid
from gateway.preview_client import own_ports, relayed_by_a_gateway, unavailable
from shared.errors import PreviewError, PreviewUrlNotFound, StreamNotFound
from shared.log_setup import request_id_var
from shared.request_id import HEADER
from shared.streams.filters import AccountQuery

log = logging.getLogger("gateway.preview")

api = Api(tag="preview")

Kind = Literal["last_frame", "live"]
KINDS: tuple[Kind, ...] = ("last_frame", "live")
CHUNK = 64 * 1024
DEFAULT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Target:
    """Whose preview is asked for: the stream and, in v1, the account scope."""

    stream_id: str
    account_id: str | None


async def preview_url(request: web.Request, kind: Kind, target: Target) -> str:
    """The URL the stream's agent reported for ``kind``: 39001 / 39009 when there is none."""
    stream_id, account_id = target.stream_id, target.account_id
    doc = await request.app[DATABASE].streams.find_one(
        {"_id": stream_id}, {"preview": 1, "account_id": 1}
    )
    if doc is None or account_id not in (None, doc["account_id"]):
        raise StreamNotFound(stream_id=stream_id)
    url = ((doc.get("preview") or {}).get(kind) or {}).get("url")
    if not url:
        raise PreviewUrlNotFound(kind=kind, stream_id=stream_id)
    return str(url)


async def read_limited(upstream: aiohttp.ClientResponse, max_bytes: int, stream_id: str) -> bytes:
    if upstream.content_length is not None and upstream.content_length > max_bytes:
        log.info("last frame of %s: %d bytes, over the cap", stream_id, upstream.content_length)
        raise unavailable()
    body = bytearray()
    async for chunk in upstream.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            log.info("last frame of %s: over the cap of %d bytes", stream_id, max_bytes)
            raise unavailable()
    return bytes(body)


def passed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    headers: dict[str, str] = {
        hdrs.CONTENT_TYPE: upstream.headers.get(hdrs.CONTENT_TYPE, DEFAULT_TYPE)
    }
    if hdrs.CONTENT_ENCODING in upstream.headers:
        headers[hdrs.CONTENT_ENCODING] = upstream.headers[hdrs.CONTENT_ENCODING]
    return headers


async def last_frame(request: web.Request, target: Target) -> web.StreamResponse:
    """The whole last frame within ``LUNA_STREAMS_PREVIEW_TIMEOUT`` (waiting for a pooled
    connection included) and ``LUNA_STREAMS_PREVIEW_MAX_BYTES``."""
    url = await preview_url(request, "last_frame", target)
    settings, previews = request.app[SETTINGS], request.app[PREVIEWS]
    ports = own_ports(request, settings)
    try:
        async with asyncio.timeout(settings.preview_timeout):
            async with previews.open("last_frame", url, ports, target.stream_id) as upstream:
                body = await read_limited(upstream, settings.preview_max_bytes, target.stream_id)
                headers = passed_headers(upstream)
    except TimeoutError:
        log.info("last frame of %s: no answer within the deadline", target.stream_id)
        raise unavailable() from None
    except aiohttp.ClientError as exc:
        log.info("last frame of %s: %s", target.stream_id, type(exc).__name__)
        raise unavailable() from None
    return web.Response(body=body, headers=headers)


async def live(request: web.Request, target: Target) -> web.StreamResponse:
    """Relayed as it comes, for at most ``LUNA_STREAMS_PREVIEW_LIVE_MAX_DURATION``."""
    url = await preview_url(request, "live", target)
    settings, previews = request.app[SETTINGS], request.app[PREVIEWS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.preview_live_max_duration
    async with (
        previews.live_slot(),
        previews.open("live", url, own_ports(request, settings), target.stream_id) as upstream,
    ):
        try:
            first = await upstream.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("live preview of %s: %s", target.stream_id, type(exc).__name__)
            raise unavailable() from None
        response = web.StreamResponse(headers=passed_headers(upstream))
        response.headers[hdrs.CACHE_CONTROL] = "no-cache"
        request_id = request_id_var.get()
        if request_id is not None:  # the middleware cannot add it once headers are sent
            response.headers[HEADER] = request_id
        await response.prepare(request)
        try:
            async with asyncio.timeout_at(deadline):
                chunk = first
                while chunk:
                    await response.write(chunk)
                    chunk = await upstream.content.readany()
        except TimeoutError:
            if loop.time() >= deadline:
                log.info("live preview of %s: maximum duration reached", target.stream_id)
            else:
                log.info("live preview of %s: source went silent", target.stream_id)
        except (OSError, aiohttp.ClientError) as exc:
            log.info("live preview of %s ended: %s", target.stream_id, type(exc).__name__)
            return response
        with contextlib.suppress(OSError, aiohttp.ClientError):
            await response.write_eof()
    return response


def add_preview_routes(version: int) -> None:
    def handler(kind: Kind) -> Handler:
        fetch = last_frame if kind == "last_frame" else live

        async def get_preview(request: web.Request) -> web.StreamResponse:
            stream_id = path_uuid(request, "stream_id")
            account_id = parse_query(request, AccountQuery).account_id if version == 1 else None
            if relayed_by_a_gateway(request):
                log.info("preview of %s asked by a gateway's preview fetch: refused", stream_id)
                raise unavailable()
            return await fetch(request, Target(stream_id, account_id))

        return get_preview

    errors = (StreamNotFound, PreviewUrlNotFound, PreviewError)
    responses = {
        "last_frame": Response(
            "The last frame, as the agent serves it (image/jpeg, typically)",
            content_type="image/*",
            schema={"type": "string", "format": "binary"},
        ),
        "live": Response(
            "The live preview, relayed as the agent streams it",
            content_type="multipart/x-mixed-replace",
            schema={"type": "string", "format": "binary"},
        ),
    }
    summaries = {"last_frame": "Get stream last frame preview", "live": "Get stream live preview"}
    for kind in KINDS:
        for middle in ("/preview/handler", "/preview"):
            path = f"/{version}/streams/{{stream_id}}{middle}/{kind}"
            api.add(
                "GET",
                path,
                handler(kind),
                summary=summaries[kind] + (" (alias)" if middle == "/preview" else ""),
                query=AccountQuery if version == 1 else None,
                responses={200: responses[kind]},
                errors=errors,
            )


for _version in (1, 2):
    add_preview_routes(_version)
