"""Which preview URLs an agent may report, and which the gateway may fetch (design.md,
"Previews").

The gateway fetches a stream's previews for any API client from the URLs the stream's agent
reported, so a URL is accepted only where it points at that agent:

- ``http`` or ``https``, without user info;
- its host an IP address (a name could resolve elsewhere by the time it is fetched);
- that address is the one the feedback came from (the TCP peer; behind a load balancer the
  ``X-Forwarded-For`` address, believed only when the peer is one of ``trusted_proxies``),
  or lies inside one of ``agent_networks``;
- never the gateway itself (an address of this host and one of the gateway's ports).

What the gateway relays of it is only an image (:func:`image_type`): JPEG, PNG or WebP, as
its ``Content-Type`` says *and* its first bytes prove. Anything else an agent serves (HTML,
SVG, a script, an image type that can carry script) would run on the gateway's origin when
a user opens the preview in a tab.

:meth:`PreviewPolicy.check_feedback` refuses a feedback batch with a bad URL (12022 at
``streams.N.preview.<kind>.url``, before anything is written); :meth:`PreviewPolicy.fetchable`
checks a stored URL again before it is fetched.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final

from yarl import URL

from shared.core.errors import BadInputJson, InvalidValue, PreviewUrlRefused
from shared.domain.models.feedback import FeedbackItem

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

SCHEMES = ("http", "https")
HOST_INVALID = "URL host invalid"
SCHEME_INVALID = "URL scheme invalid: expected http or https"
USERINFO_INVALID = "URL must not carry user info"


#: the image types a preview is relayed as, each with the bytes its data starts with
#: (WebP: ``RIFF``, four bytes of length, ``WEBP``); ``image/jpg`` is a common misspelling
IMAGE_MAGIC: Final[dict[str, tuple[tuple[int, bytes], ...]]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/webp": ((0, b"RIFF"), (8, b"WEBP")),
}
IMAGE_ALIASES: Final = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
#: how many first bytes :func:`image_type` needs to see
IMAGE_HEAD: Final = 12


def image_type(content_type: str | None, data: bytes) -> str | None:
    """The image type ``data`` is relayed as (``image/jpeg``, ``image/png`` or
    ``image/webp``), or None: ``content_type`` must name one of them and ``data`` must start
    as that type does. A lying header (HTML sent as ``image/jpeg``) does not pass."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    media = IMAGE_ALIASES.get(media, media)
    magic = IMAGE_MAGIC.get(media)
    if magic is None:
        return None
    if all(data[at : at + len(head)] == head for at, head in magic):
        return media
    return None


def parse_address(text: str | None) -> Address | None:
    """An IP address (an IPv4-mapped IPv6 one as IPv4), or None when ``text`` is not one."""
    if not text:
        return None
    try:
        address = ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_local_address(address: Address) -> bool:
    """Whether ``address`` belongs to this host: loopback, unspecified, or bindable here."""
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def parse_http_url(url: str, refused: type[InvalidValue]) -> URL:
    """``url`` parsed, when it is ``http`` or ``https`` without user info; else ``refused``
    (the policy's error) with the rule it breaks. The form both URL policies ask first
    (previews here, webhooks in :mod:`shared.services.webhooks.policy`)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise refused(HOST_INVALID) from None
    if parsed.scheme not in SCHEMES:
        raise refused(SCHEME_INVALID)
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise refused(USERINFO_INVALID)
    return parsed


def _inside(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class PreviewPolicy:
    agent_networks: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()

    def sender(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> Address | None:
        """The address a request came from: the peer, or, when the peer is a trusted proxy,
        the nearest ``X-Forwarded-For`` address that is not a trusted proxy itself."""
        address = parse_address(peer)
        if address is None or not _inside(address, self.trusted_proxies):
            return address
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            forwarded = parse_address(hop)
            if forwarded is None:
                return None  # a garbled chain names nobody
            address = forwarded
            if not _inside(address, self.trusted_proxies):
                return address
        return address

    def fetchable(self, url: str, own_ports: Iterable[int]) -> URL:
        """``url`` parsed, when it may be fetched; else :class:`PreviewUrlRefused`."""
        parsed = parse_http_url(url, PreviewUrlRefused)
        address = parse_address(parsed.host)
        if address is None or address.is_unspecified or address.is_multicast:
            raise PreviewUrlRefused(HOST_INVALID)
        if parsed.port in set(own_ports) and is_local_address(address):
            raise PreviewUrlRefused(HOST_INVALID)  # the gateway itself
        return parsed

    def allowed(self, url: str, sender: Address | None, own_ports: Iterable[int]) -> None:
        """Refuse ``url`` unless it may be fetched and points at ``sender`` or inside an
        agent network."""
        parsed = self.fetchable(url, own_ports)
        address = parse_address(parsed.host)
        assert address is not None  # fetchable() checked it
        if address == sender or _inside(address, self.agent_networks):
            return
        raise PreviewUrlRefused(HOST_INVALID)

    def check_feedback(
        self, items: Sequence[FeedbackItem], sender: Address | None, own_ports: Iterable[int]
    ) -> None:
        """12022 at the first preview URL of ``items`` that is not allowed."""
        ports = frozenset(own_ports)
        for index, item in enumerate(items):
            if item.preview is None:
                continue
            for kind in ("live", "last_frame"):
                given = getattr(item.preview, kind)
                if given is None:
                    continue
                try:
                    self.allowed(given.url, sender, ports)
                except PreviewUrlRefused as refused:
                    raise BadInputJson(
                        path=f"streams.{index}.preview.{kind}.url", message=str(refused)
                    ) from None
