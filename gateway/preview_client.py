"""Outgoing preview requests: the agents' last frames and live previews, fetched within bounds.

- Two connection pools of their own: live relays (``LUNA_STREAMS_PREVIEW_MAX_LIVE`` at once;
  one more is refused at once) cannot starve last-frame fetches
  (``LUNA_STREAMS_PREVIEW_MAX_CONNECTIONS``).
- No redirects followed, no proxy from the environment, no decompression (bytes pass as
  they came, with their ``Content-Encoding``).
- Every URL is checked again by :class:`shared.domain.preview_policy.PreviewPolicy` before the
  request: never the gateway itself. Each request carries ``Via: 1.1 luna-streams``, and a
  preview request that carries it is refused, so gateways cannot fetch from each other.
- Every failure is the same 39010 "the preview is unavailable": which ports are open, closed or
  something else is not for API clients to learn. The reason goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import hdrs, web

from shared.core.errors import PreviewError, PreviewUrlRefused
from shared.core.settings import GatewaySettings
from shared.domain.models.feedback import FeedbackItem
from shared.domain.preview_policy import PreviewPolicy

log = logging.getLogger("gateway.preview")

VIA = "1.1 luna-streams"
UNAVAILABLE = "the preview is unavailable"


def unavailable() -> PreviewError:
    return PreviewError(reason=UNAVAILABLE)


def policy_of(settings: GatewaySettings) -> PreviewPolicy:
    return PreviewPolicy(
        agent_networks=tuple(settings.preview_agent_networks),
        trusted_proxies=tuple(settings.trusted_proxies),
    )


def own_ports(request: web.Request, settings: GatewaySettings) -> frozenset[int]:
    """The gateway's configured port and the one this request arrived on."""
    ports = {settings.port}
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        ports.add(int(sockname[1]))
    return frozenset(ports)


def check_feedback_previews(
    request: web.Request, settings: GatewaySettings, items: Iterable[FeedbackItem]
) -> None:
    """12022 when a feedback item reports a preview URL the gateway would not fetch."""
    policy = policy_of(settings)
    sender = policy.sender(request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []))
    policy.check_feedback(list(items), sender, own_ports(request, settings))


def _session(limit: int, settings: GatewaySettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.preview_timeout, sock_read=settings.preview_timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        trust_env=False,
        headers={hdrs.VIA: VIA, hdrs.ACCEPT_ENCODING: "identity"},
    )


class PreviewClient:
    """The two pools and the count of live relays running now."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.policy = policy_of(settings)
        self.frames = _session(settings.preview_max_connections, settings)
        self.live = _session(settings.preview_max_live, settings)
        self.live_relays = 0

    async def close(self) -> None:
        await self.frames.close()
        await self.live.close()

    @asynccontextmanager
    async def open(
        self, kind: str, url: str, ports: Iterable[int], stream_id: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The source's 2xx response; anything else is 39010 "the preview is unavailable"."""
        try:
            target = self.policy.fetchable(url, ports)
        except PreviewUrlRefused as refused:
            log.info("%s preview of %s not fetched: %s", kind, stream_id, refused)
            raise unavailable() from None
        session = self.live if kind == "live" else self.frames
        try:
            async with session.get(target, allow_redirects=False) as upstream:
                if not 200 <= upstream.status < 300:
                    status = upstream.status
                    log.info("%s preview of %s: source answered %d", kind, stream_id, status)
                    raise unavailable()
                yield upstream
        except TimeoutError:
            log.info("%s preview of %s: timeout", kind, stream_id)
            raise unavailable() from None
        except aiohttp.ClientError as exc:
            log.info("%s preview of %s: %s", kind, stream_id, type(exc).__name__)
            raise unavailable() from None

    @asynccontextmanager
    async def live_slot(self) -> AsyncIterator[None]:
        """One of ``LUNA_STREAMS_PREVIEW_MAX_LIVE`` relays; none free is 39010 at once."""
        if self.live_relays >= self.settings.preview_max_live:
            log.info("live preview refused: %d relays running", self.live_relays)
            raise unavailable()
        self.live_relays += 1
        try:
            yield
        finally:
            self.live_relays -= 1


def relayed_by_a_gateway(request: web.Request) -> bool:
    """Whether ``request`` is a preview fetch of a gateway (this one or another)."""
    return any(VIA in value for value in request.headers.getall(hdrs.VIA, []))
