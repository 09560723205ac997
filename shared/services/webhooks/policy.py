"""Which URLs a webhook may call (design.md, "Notifications and bulk work"; the preview
policy's rules, for targets an operator names instead of an agent):

- ``http`` or ``https``, with a host, without user info;
- every address the host is (an IP address, or what its name resolves to) is a public
  one: not loopback, private, link-local, shared, reserved, multicast or unspecified, nor
  an address of this host, unless it lies inside one of ``allowed_networks``
  (``LUNA_STREAMS_WEBHOOK_ALLOWED_NETWORKS``, empty by default).

The gateway checks a URL when it is registered (:meth:`WebhookUrlPolicy.check`, the name
resolved then); the worker checks it again before each delivery and connects only to
addresses that pass (:class:`PolicyResolver`): a name that resolves elsewhere later (DNS
rebinding) is refused then.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from shared.core.errors import WebhookUrlRefused
from shared.domain.preview_policy import (
    HOST_INVALID,
    Address,
    Network,
    is_local_address,
    parse_address,
    parse_http_url,
)

#: seconds a registration waits for a name to resolve
RESOLVE_TIMEOUT: Final = 3.0
INTERNAL = (
    "URL host is an internal address (allow its network with LUNA_STREAMS_WEBHOOK_ALLOWED_NETWORKS)"
)
UNRESOLVED = "URL host name does not resolve"


@dataclass(frozen=True, slots=True)
class WebhookUrlPolicy:
    allowed_networks: tuple[Network, ...] = ()

    def parse(self, url: str) -> URL:
        """``url`` parsed, when its form is allowed; else :class:`WebhookUrlRefused`."""
        parsed = parse_http_url(url, WebhookUrlRefused)
        if not parsed.host:
            raise WebhookUrlRefused(HOST_INVALID)
        literal = parse_address(parsed.host)
        if literal is not None:
            self.check_address(literal)
        return parsed

    def check_address(self, address: Address) -> None:
        """Refuse an address a webhook may not reach."""
        if address.is_multicast or address.is_unspecified:
            raise WebhookUrlRefused(HOST_INVALID)
        if any(address in network for network in self.allowed_networks):
            return
        if not address.is_global or is_local_address(address):
            raise WebhookUrlRefused(INTERNAL)

    async def check(self, url: str) -> URL:
        """:meth:`parse`, and a host name resolved now: each of its addresses checked."""
        parsed = self.parse(url)
        assert parsed.host is not None  # parse() checked it
        if parse_address(parsed.host) is not None:
            return parsed
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                found = await asyncio.get_running_loop().getaddrinfo(
                    parsed.host, parsed.port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError, UnicodeError):
            raise WebhookUrlRefused(UNRESOLVED) from None
        for *_, sockaddr in found:
            address = parse_address(str(sockaddr[0]))
            if address is None:
                raise WebhookUrlRefused(HOST_INVALID)
            self.check_address(address)
        return parsed


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows: a connection goes
    to a checked address, whatever the name resolves to by then."""

    def __init__(self, policy: WebhookUrlPolicy) -> None:
        self.policy = policy
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusal: Any = None
        for result in found:
            address = parse_address(result["host"])
            try:
                if address is None:
                    raise WebhookUrlRefused(HOST_INVALID)
                self.policy.check_address(address)
            except WebhookUrlRefused as refused:
                refusal = refused
                continue
            allowed.append(result)
        if not allowed:
            raise OSError(f"{host}: {refusal or UNRESOLVED}")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()
