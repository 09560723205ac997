"""Preview routes, v1 and v2: the stream's last frame and live preview, fetched from the
URLs its agent reported in feedback.

What an agent serves is relayed only as an image (:func:`shared.domain.preview_policy.image_type`:
JPEG, PNG or WebP by its ``Content-Type`` and by its first bytes), never with an encoding,
and every relayed response says ``X-Content-Type-Options: nosniff`` and
``Content-Security-Policy: default-src 'none'; sandbox``: nothing an agent serves runs on the
gateway's origin.

``last_frame`` is read whole (at most ``LUNA_STREAMS_PREVIEW_MAX_BYTES``, within
``LUNA_STREAMS_PREVIEW_TIMEOUT``) and answered as the image it is. ``live`` is a
``multipart/x-mixed-replace`` stream of images (MJPEG): each part is read whole (at most
``LUNA_STREAMS_PREVIEW_MAX_BYTES``), checked, and sent on as it comes, framed anew with a
boundary of the gateway's own, until the client or the source closes, a part is not an
image, the source is silent for ``LUNA_STREAMS_PREVIEW_TIMEOUT``, or
``LUNA_STREAMS_PREVIEW_LIVE_MAX_DURATION`` has passed. A failure before anything was sent
(the first part included) is 39010 "the preview is unavailable" (the reason is logged, never
shown); once the relay has started it just ends. The requests themselves:
:mod:`gateway.preview_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.api import Api, Handler, Response
from gateway.keys import DATABASE, PREVIEWS, SETTINGS
from gateway.parsing import parse_query, path_uuid
from gateway.preview_client import own_ports, relayed_by_a_gateway, unavailable
from shared.core.errors import PreviewError, PreviewUrlNotFound, StreamNotFound
from shared.domain.filters import AccountQuery
from shared.domain.preview_policy import image_type
from shared.domain.request_id import HEADER
from shared.domain.roles import Access
from shared.store.shown import SHOWN_AT, with_report
from shared.telemetry.log_setup import request_id_var

log = logging.getLogger("gateway.preview")

api = Api(tag="preview")

Kind = Literal["last_frame", "live"]
KINDS: tuple[Kind, ...] = ("last_frame", "live")
CHUNK = 64 * 1024
LIVE_TYPE = "multipart/x-mixed-replace"
#: on every relayed preview: the browser takes it for what it says, and runs nothing in it
RELAY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
#: what a live source may break off with; the relay ends there
SOURCE_ERRORS = (aiohttp.ClientError, HttpProcessingError, ValueError, RuntimeError)


class NotAnImage(Exception):
    """What the source sent is not a preview the gateway relays (the reason is logged)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Whose preview is asked for: the stream and, in v1, the account scope."""

    stream_id: str
    account_id: str | None


async def preview_url(request: web.Request, kind: Kind, target: Target) -> str:
    """The URL the stream's agent reported for ``kind``: 39001 / 39009 when there is none."""
    stream_id, account_id = target.stream_id, target.account_id
    database = request.app[DATABASE]
    doc = await with_report(
        database,
        await database.streams.find_one(
            {"_id": stream_id}, {"preview": 1, "account_id": 1, SHOWN_AT: 1}
        ),
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


def relayed_image(content_type: str | None, encoding: str | None, data: bytes) -> str:
    """The type ``data`` is relayed as; :class:`NotAnImage` unless an image, unencoded."""
    if encoding not in (None, "", "identity"):
        raise NotAnImage(f"Content-Encoding {encoding[:32]!r}")
    kind = image_type(content_type, data)
    if kind is None:
        raise NotAnImage(f"not an image (Content-Type {(content_type or '')[:64]!r})")
    return kind


async def last_frame(request: web.Request, target: Target) -> web.StreamResponse:
    """The whole last frame within ``LUNA_STREAMS_PREVIEW_TIMEOUT`` (waiting for a pooled
    connection included) and ``LUNA_STREAMS_PREVIEW_MAX_BYTES``, if it is an image."""
    url = await preview_url(request, "last_frame", target)
    settings, previews = request.app[SETTINGS], request.app[PREVIEWS]
    ports = own_ports(request, settings)
    try:
        async with asyncio.timeout(settings.preview_timeout):
            async with previews.open("last_frame", url, ports, target.stream_id) as upstream:
                body = await read_limited(upstream, settings.preview_max_bytes, target.stream_id)
                kind = relayed_image(
                    upstream.headers.get(hdrs.CONTENT_TYPE),
                    upstream.headers.get(hdrs.CONTENT_ENCODING),
                    body,
                )
    except TimeoutError:
        log.info("last frame of %s: no answer within the deadline", target.stream_id)
        raise unavailable() from None
    except aiohttp.ClientError as exc:
        log.info("last frame of %s: %s", target.stream_id, type(exc).__name__)
        raise unavailable() from None
    except NotAnImage as exc:
        log.info("last frame of %s refused: %s", target.stream_id, exc)
        raise unavailable() from None
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: kind, **RELAY_HEADERS})


class LiveParts:
    """The images of a ``multipart/x-mixed-replace`` source, one by one, each checked."""

    def __init__(self, upstream: aiohttp.ClientResponse, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        content_type = upstream.headers.get(hdrs.CONTENT_TYPE, "")
        if upstream.headers.get(hdrs.CONTENT_ENCODING, "identity") != "identity":
            raise NotAnImage("an encoded live preview")
        if content_type.split(";", 1)[0].strip().lower() != LIVE_TYPE:
            raise NotAnImage(f"not {LIVE_TYPE} (Content-Type {content_type[:64]!r})")
        try:
            self.reader = MultipartReader(upstream.headers, upstream.content)
        except (ValueError, AssertionError) as exc:
            raise NotAnImage(f"no multipart boundary: {type(exc).__name__}") from None

    async def next(self) -> tuple[str, bytes] | None:
        """The next part's type and bytes; None at the end of the source."""
        try:
            part = await self.reader.next()
        except ValueError:  # a source ending without the closing delimiter
            return None
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):
            raise NotAnImage("a nested multipart part")
        data = bytearray()
        while chunk := await part.read_chunk(CHUNK):
            data += chunk
            if len(data) > self.max_bytes:
                raise NotAnImage(f"a part over the cap of {self.max_bytes} bytes")
        headers = part.headers
        kind = relayed_image(
            headers.get(hdrs.CONTENT_TYPE), headers.get(hdrs.CONTENT_ENCODING), bytes(data)
        )
        return kind, bytes(data)


def live_part(boundary: str, kind: str, data: bytes) -> bytes:
    """One part as the gateway frames it."""
    head = f"--{boundary}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data + b"\r\n"


async def live(request: web.Request, target: Target) -> web.StreamResponse:
    """Relayed image by image, for at most ``LUNA_STREAMS_PREVIEW_LIVE_MAX_DURATION``."""
    url = await preview_url(request, "live", target)
    settings, previews = request.app[SETTINGS], request.app[PREVIEWS]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.preview_live_max_duration
    stream_id = target.stream_id
    async with (
        previews.live_slot(),
        previews.open("live", url, own_ports(request, settings), stream_id) as upstream,
    ):
        try:
            async with asyncio.timeout(settings.preview_timeout):
                parts = LiveParts(upstream, settings.preview_max_bytes)
                first = await parts.next()
        except (TimeoutError, *SOURCE_ERRORS) as exc:
            log.info("live preview of %s: %s", stream_id, type(exc).__name__)
            raise unavailable() from None
        except NotAnImage as exc:
            log.info("live preview of %s refused: %s", stream_id, exc)
            raise unavailable() from None
        if first is None:
            log.info("live preview of %s: the source sent no image", stream_id)
            raise unavailable()
        # a boundary the agent cannot know, so no image it sends can end a part early
        boundary = f"luna-streams-{uuid.uuid4().hex}"
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: f"{LIVE_TYPE}; boundary={boundary}", **RELAY_HEADERS}
        )
        response.headers[hdrs.CACHE_CONTROL] = "no-cache"
        request_id = request_id_var.get()
        if request_id is not None:  # the middleware cannot add it once headers are sent
            response.headers[HEADER] = request_id
        await response.prepare(request)
        try:
            async with asyncio.timeout_at(deadline):
                part: tuple[str, bytes] | None = first
                while part is not None:
                    await response.write(live_part(boundary, *part))
                    part = await parts.next()
        except TimeoutError:
            if loop.time() >= deadline:
                log.info("live preview of %s: maximum duration reached", stream_id)
            else:
                log.info("live preview of %s: source went silent", stream_id)
        except NotAnImage as exc:
            log.info("live preview of %s ended: %s", stream_id, exc)
        except (OSError, *SOURCE_ERRORS) as exc:
            log.info("live preview of %s ended: %s", stream_id, type(exc).__name__)
            return response
        with contextlib.suppress(OSError, aiohttp.ClientError):
            await response.write(f"--{boundary}--\r\n".encode())
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
            "The last frame, as the agent serves it: image/jpeg, image/png or image/webp "
            "(anything else the agent serves is 39010)",
            content_type="image/*",
            schema={"type": "string", "format": "binary"},
        ),
        "live": Response(
            "The live preview, relayed image by image as the agent streams it (each part "
            "image/jpeg, image/png or image/webp; the relay ends at any other)",
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
                access=Access.PREVIEW,
            )


for _version in (1, 2):
    add_preview_routes(_version)
