"""``Accept`` header negotiation: which of the types a route can give the client takes."""

from __future__ import annotations


def accept_ranges(accept: str) -> list[str]:
    """The media ranges of an ``Accept`` header, best first; ranges with ``q=0`` dropped."""
    ranges: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranges.append((-quality, index, media.lower()))
    return [media for _, _, media in sorted(ranges)]


def _takes(media_range: str, media_type: str) -> bool:
    if media_range in (media_type, "*/*", "*"):
        return True
    major, _, minor = media_range.partition("/")
    return minor == "*" and media_type.split("/")[0] == major


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The type of ``offered`` that the best range of ``accept`` takes (for a wildcard the
    first one, in ``offered``'s order); None when no range takes any. An absent or empty
    header takes anything."""
    ranges = accept_ranges(accept) if accept and accept.strip() else ["*/*"]
    for media_range in ranges:
        for media_type in offered:
            if _takes(media_range, media_type):
                return media_type
    return None
