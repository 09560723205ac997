"""One clock: every process reads time as the database server's, so a host whose clock is
minutes off neither takes a lease early nor downgrades a stream that is alive."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.core import clock
from shared.store.leases import start_period
from shared.store.mongo import Database

SKEW = timedelta(minutes=7)


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call it, and this process's clock runs seven minutes ahead."""

    def ahead() -> None:
        monkeypatch.setattr(clock, "_local", lambda: datetime.now(UTC) + SKEW)

    yield ahead
    monkeypatch.undo()
    clock._offset = timedelta(0)


async def server_time(database: Database) -> datetime:
    reply = await database.client.admin.command("hello")
    at: datetime = reply["localTime"]
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def test_a_skewed_process_reads_the_servers_time(
    database: Database, skew: Callable[[], None]
) -> None:
    skew()
    await database.ping()  # what every process does when it opens the database
    assert abs(clock.offset() + SKEW) < timedelta(seconds=2)
    assert abs(clock.now_utc() - await server_time(database)) < timedelta(seconds=2)


async def test_a_skewed_process_takes_no_lease_early(
    database: Database, skew: Callable[[], None]
) -> None:
    assert await start_period(database, "job", 60.0, "honest")
    skew()  # another replica, on a host whose clock runs ahead
    await database.ping()
    # on its own clock the 60 s period is long over; on the server's it has just begun
    assert not await start_period(database, "job", 60.0, "skewed")
    lease = await database.leases.find_one({"_id": "job"})
    assert lease is not None and lease["owner"] == "honest"
