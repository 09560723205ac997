"""One clock: the database server's.

Leases, the handler-lost cutoff, the change sweep and log times compare times that
different hosts wrote, so a host whose clock runs ahead could take a lease early or
downgrade a stream that is alive. Every process therefore reads time as the MongoDB
server's: :func:`sync` measures the offset of the local clock from the server's
(``hello.localTime``, corrected by half the round trip) when the database is opened and
whenever a process checks it again (heartbeats, health checks), and :func:`now_utc` is the
local clock plus that offset.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

_offset = timedelta(0)


def _local() -> datetime:
    return datetime.now(UTC)


def now_utc() -> datetime:
    """The server's time, to the millisecond (MongoDB keeps milliseconds: stored and
    returned times agree)."""
    now = _local() + _offset
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def offset() -> timedelta:
    return _offset


async def sync(admin: AsyncDatabase[dict[str, object]]) -> timedelta:
    """Measure the local clock's offset from the server's; the offset now in force."""
    global _offset
    before, started = _local(), time.monotonic()
    reply = await admin.command("hello")
    round_trip = timedelta(seconds=time.monotonic() - started)
    server = reply.get("localTime")
    if isinstance(server, datetime):
        if server.tzinfo is None:
            server = server.replace(tzinfo=UTC)
        _offset = server - (before + round_trip / 2)
    return _offset
