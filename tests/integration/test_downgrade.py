"""Downgrade (handler lost) end to end, reference section 5.

A claimed stream whose agent stays silent for longer than STREAM_STATUS_OBSOLETING_PERIOD
goes handler_lost -> restart -> pending (same version) and gets a new queue token; a stream
whose agent reports in time stays with it; the silent agent's late report is ``unmodified``.
The autorestart worker (which runs the downgrade job) is a real process with short periods.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import (
    Client,
    claim_ids,
    create_pending,
    get_stream,
    send_feedback,
    short_periods,
    stream_log,
)
from tests.processes import running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

PERIOD = 2.0


def short(settings: Settings) -> Settings:
    return short_periods(
        settings, stream_status_obsoleting_period=PERIOD, stream_status_obsoleting_interval=0.5
    )


async def report(client: Client, stream_id: str, status: str = "in_progress") -> dict[str, Any]:
    return await send_feedback(client, {"stream_id": stream_id, "status": status, "version": 1})


async def test_silent_agent_loses_its_stream_and_a_reporting_one_keeps_it(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    silent = await create_pending(client, name="silent")
    alive = await create_pending(client, name="alive")
    assert sorted(await claim_ids(client)) == sorted([silent, alive])
    claimed_row = (await stream_log(database, silent))[-1]
    assert claimed_row["status"] == "in_progress"

    with running(worker("autorestart_worker", short(settings))):
        # the agent of ``alive`` reports every 0.5 s; the agent of ``silent`` says nothing
        deadline = time.monotonic() + 30
        while (await get_stream(client, silent))["status"] != "pending":
            assert time.monotonic() < deadline, "the silent stream was never downgraded"
            answer = await report(client, alive)
            assert answer["streams"]["modified"] == [
                {"stream_id": alive, "status": "in_progress", "version": 1}
            ]
            await asyncio.sleep(0.5)
        assert (await get_stream(client, alive))["status"] == "in_progress"

        lost = await stream_log(database, silent)
        assert [(r["status"], r["version"]) for r in lost] == [
            ("pending", 1),
            ("in_progress", 1),
            ("handler_lost", 1),
            ("restart", 1),
            ("pending", 1),
        ]
        # not before the period was over
        assert lost[2]["log_time"] - claimed_row["log_time"] >= timedelta(seconds=PERIOD)
        stream = await get_stream(client, silent)
        assert (stream["status"], stream["version"]) == ("pending", 1)

        # the silent agent wakes up: its report changes nothing and tells it to stop
        late = await report(client, silent)
        assert late["streams"] == {
            "modified": [],
            "unmodified": [{"stream_id": silent, "status": "pending", "version": 1}],
        }
        assert (await get_stream(client, silent))["status"] == "pending"

        # the stream got a new queue token: another agent claims it (and only it); the
        # token is published a moment after the stream shows pending
        claimed: list[str] = []

        async def claimed_again() -> bool:
            claimed.extend(await claim_ids(client))
            return bool(claimed)

        await wait_for(claimed_again, timeout=10)
        assert claimed == [silent]
        assert (await stream_log(database, silent))[-1]["status"] == "in_progress"
        assert [r["status"] for r in await stream_log(database, silent)].count("handler_lost") == 1


async def test_downgrade_waits_for_the_period(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """Feedback moves the deadline: a stream reported just in time is kept, then lost one
    period after its last report."""
    stream_id = await create_pending(client)
    with running(worker("autorestart_worker", short(settings))):

        async def watching() -> bool:
            return bool(await database.leases.find_one({"_id": "autorestart:downgrade"}))

        await wait_for(watching, timeout=30)
        assert await claim_ids(client) == [stream_id]
        for _ in range(5):  # more than a period, each report well within the period
            await asyncio.sleep(PERIOD / 4)
            assert (await report(client, stream_id))["streams"]["modified"]
            assert (await get_stream(client, stream_id))["status"] == "in_progress"
        last_report = time.monotonic()

        async def downgraded() -> bool:
            return bool((await get_stream(client, stream_id))["status"] == "pending")

        await wait_for(downgraded, timeout=20)
        assert time.monotonic() - last_report >= PERIOD - 0.1

        async def logged() -> bool:  # the rows follow the change that carries them
            return len(await stream_log(database, stream_id)) >= 10

        await wait_for(logged, timeout=10)
        statuses = [r["status"] for r in await stream_log(database, stream_id)]
        assert statuses == [
            "pending",
            "in_progress",
            *["in_progress"] * 5,
            "handler_lost",
            "restart",
            "pending",
        ]
