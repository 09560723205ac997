"""A probe loop stops when it is cancelled, whatever the probe was doing: Python 3.11's
``asyncio.wait_for`` returns the result of an awaitable that ends in the same turn as the
cancel and drops the cancel, which left a gateway's shutdown waiting forever on its probe
task (the library bounds its waits with ``asyncio.timeout``, which keeps the cancel)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shared.runtime.probes import probe_forever
from shared.store.mongo import Database


class CancelsItsCaller:
    """A database whose ping cancels the probe loop and answers in the same turn."""

    def __init__(self) -> None:
        self.loop: asyncio.Task[None] | None = None
        self.pings = 0

    async def ping(self) -> dict[str, Any]:
        self.pings += 1
        assert self.loop is not None
        self.loop.cancel()
        return {"ok": 1}


async def test_a_cancel_as_a_probe_ends_stops_the_loop() -> None:
    database = CancelsItsCaller()

    async def broker_open() -> bool:
        return True

    database_now = cast(Database, database)
    task = asyncio.create_task(probe_forever(lambda: database_now, lambda: broker_open, every=0.01))
    database.loop = task
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 5)
    assert database.pings == 1
