"""The log janitor (a real process): LUNA_STREAMS_LOGS_CLEAR_INTERVAL, reference section 7.

Rows older than the interval go, but every stream keeps its newest row (a deleted stream
keeps its final ``deleted`` row); ``active: false`` deletes nothing.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import Client, create_pending, patch_status
from tests.processes import free_port, running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

MAX_AGE = timedelta(seconds=2)


def clear_interval(active: bool) -> str:
    return json.dumps(
        {"interval": 2, "interval_type": "seconds", "check_interval": 1, "active": active}
    )


async def rows(database: Database, stream_id: str) -> list[dict[str, Any]]:
    found = await database.stream_logs.find({"stream_id": stream_id}).to_list()
    return sorted(found, key=lambda row: (row["log_time"], row["_id"]))


async def statuses(database: Database, stream_id: str) -> list[str]:
    return [row["status"] for row in await rows(database, stream_id)]


async def test_old_rows_go_and_each_stream_keeps_its_newest(
    settings: Settings, client: Client, database: Database
) -> None:
    live = await create_pending(client)
    await patch_status(client, live, "pause")
    await patch_status(client, live, "pending")
    gone = await create_pending(client)
    resp = await client.delete(f"/1/streams/{gone}")
    assert resp.status == 204
    assert await statuses(database, live) == ["pending", "pause", "pending"]
    assert await statuses(database, gone) == ["pending", "deleted"]
    newest = (await rows(database, live))[-1]["_id"]
    final = (await rows(database, gone))[-1]["_id"]

    janitor = worker("log_janitor", settings, LUNA_STREAMS_LOGS_CLEAR_INTERVAL=clear_interval(True))
    with running(janitor):

        async def cleared() -> bool:
            kept = [r["_id"] for r in await rows(database, live)]
            return kept == [newest] and [r["_id"] for r in await rows(database, gone)] == [final]

        await wait_for(cleared, timeout=30)
        assert await statuses(database, live) == ["pending"]
        assert await statuses(database, gone) == ["deleted"]

        # young rows stay: checked only while they are surely younger than the interval
        await patch_status(client, live, "pause")
        await patch_status(client, live, "pending")
        young = await rows(database, live)
        if datetime.now(UTC) - young[1]["log_time"] < MAX_AGE:
            assert [r["status"] for r in young] == ["pending", "pause", "pending"]
        newest = young[-1]["_id"]

        async def cleared_again() -> bool:
            return [r["_id"] for r in await rows(database, live)] == [newest]

        await wait_for(cleared_again, timeout=30)
        # the janitor carries on: the deleted stream's last row is never removed
        runs = await janitor_runs(database)

        async def two_more_runs() -> bool:
            return await janitor_runs(database) >= runs + 2

        await wait_for(two_more_runs, timeout=20)
        assert [r["_id"] for r in await rows(database, gone)] == [final]
        assert [r["_id"] for r in await rows(database, live)] == [newest]


async def test_inactive_janitor_deletes_nothing(
    settings: Settings, client: Client, database: Database
) -> None:
    stream_id = await create_pending(client)
    await patch_status(client, stream_id, "pause")
    await patch_status(client, stream_id, "pending")
    before = await rows(database, stream_id)
    assert len(before) == 3

    port = free_port()
    janitor = worker(
        "log_janitor",
        settings,
        LUNA_STREAMS_LOGS_CLEAR_INTERVAL=clear_interval(False),
        LUNA_STREAMS_JANITOR_METRICS_PORT=str(port),
    )
    with running(janitor):

        async def old() -> bool:
            age: timedelta = datetime.now(UTC) - before[-1]["log_time"]
            return age > MAX_AGE + timedelta(seconds=0.5)

        await wait_for(old, timeout=10)
        runs = await jobs_done(port)

        async def ran_twice_since() -> bool:
            return await jobs_done(port) >= runs + 2

        await wait_for(ran_twice_since, timeout=20)  # the job ran, with every row old
        assert await rows(database, stream_id) == before


async def janitor_runs(database: Database) -> int:
    lease = await database.leases.find_one({"_id": "janitor:clear_logs"})
    return int(lease["runs"]) if lease else 0


async def jobs_done(port: int) -> int:
    """``clear_logs`` runs the worker finished (its Prometheus counter); 0 until it serves."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            text = await resp.text()
    except aiohttp.ClientError:
        return 0
    match = re.search(r'^luna_streams_jobs_total\{job="clear_logs"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else 0
