"""The HTTP gateway: every route of LUNA Streams API v1 and v2 (aiohttp, stateless)."""
