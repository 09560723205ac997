"""Preview routes, v1 and v2: the stream's last frame and live preview, fetched from the
URLs its agent reported in feedback.

``last_frame`` is read whole (at most ``LUNA_STREAMS_PREVIEW_MAX_BYTES``, within
``LUNA_STREAMS_PREVIEW_TIMEOUT``) and answered with the source's content type. ``live`` is
relayed chunk by chunk as it arrives (``multipart/x-mixed-replace`` MJPEG, typically) until
the client or the source closes. A failure before anything was sent is 39010 with the
reason; once the relay has started it just ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from gateway.api import Api, Handler, Response
from gateway.keys import DATABASE, HTTP_CLIENT, SETTINGS
from gateway.parsing import parse_query, path_uuid
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


def _fetchable(url: str) -> URL:
    try:
        parsed = URL(url)
    except ValueError:
        raise PreviewError(reason="invalid url") from None
    if parsed.scheme not in ("http", "https"):
        raise PreviewError(reason="unsupported url scheme")
    if not parsed.host:
        raise PreviewError(reason="invalid url: no host")
    return parsed


@asynccontextmanager
async def open_source(
    session: aiohttp.ClientSession, url: str, limits: aiohttp.ClientTimeout | None = None
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The source's 2xx response; anything else, or a client failure, is 39010."""
    target = _fetchable(url)
    try:
        async with session.get(target, timeout=limits or session.timeout) as upstream:
            if not 200 <= upstream.status < 300:
                raise PreviewError(reason=f"source answered {upstream.status}")
            yield upstream
    except TimeoutError:
        raise PreviewError(reason="timeout") from None
    except aiohttp.ClientError as exc:
        raise PreviewError(reason=f"source unreachable: {type(exc).__name__}") from None


async def read_limited(upstream: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_large = PreviewError(reason=f"larger than {max_bytes} bytes")
    if upstream.content_length is not None and upstream.content_length > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in upstream.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


async def last_frame(request: web.Request, target: Target) -> web.StreamResponse:
    url = await preview_url(request, "last_frame", target)
    settings = request.app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.preview_timeout)
    async with open_source(request.app[HTTP_CLIENT], url, timeout) as upstream:
        body = await read_limited(upstream, settings.preview_max_bytes)
        content_type = upstream.headers.get(hdrs.CONTENT_TYPE, DEFAULT_TYPE)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})


async def live(request: web.Request, target: Target) -> web.StreamResponse:
    url = await preview_url(request, "live", target)
    async with open_source(request.app[HTTP_CLIENT], url) as upstream:
        first = await upstream.content.readany()
        response = web.StreamResponse()
        response.headers[hdrs.CONTENT_TYPE] = upstream.headers.get(hdrs.CONTENT_TYPE, DEFAULT_TYPE)
        response.headers[hdrs.CACHE_CONTROL] = "no-cache"
        request_id = request_id_var.get()
        if request_id is not None:  # the middleware cannot add it once headers are sent
            response.headers[HEADER] = request_id
        await response.prepare(request)
        try:
            chunk = first
            while chunk:
                await response.write(chunk)
                chunk = await upstream.content.readany()
            await response.write_eof()
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            log.info("live preview of %s ended: %s", target.stream_id, type(exc).__name__)
    return response


def add_preview_routes(version: int) -> None:
    def handler(kind: Kind) -> Handler:
        fetch = last_frame if kind == "last_frame" else live

        async def get_preview(request: web.Request) -> web.StreamResponse:
            stream_id = path_uuid(request, "stream_id")
            account_id = parse_query(request, AccountQuery).account_id if version == 1 else None
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
