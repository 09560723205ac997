"""Autorestart end to end: failure feedback -> (delay) -> restart -> pending.

The gateway runs in this process (``client``), feedback goes through the real RPC path to an
in-process queue worker (``queue_worker``), and the autorestart worker is a real process with
short periods. The behaviour is the reference's section 6: each attempt waits ``delay``
after the failure, at most ``attempt_count`` attempts, then the stream stays ``failure``
with autorestart status ``failed``; ``restart: 0`` never restarts; PATCH back to pending
resets the attempts.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import (
    Client,
    claim,
    create_pending,
    get_stream,
    log_statuses,
    send_feedback,
    short_periods,
    stream_log,
)
from tests.processes import running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

SWEEP = "autorestart:autorestart_sweep"


def short(settings: Settings) -> Settings:
    """Fast periodic jobs; downgrade far away (streams wait in ``failure``, not claimed)."""
    return short_periods(settings, change_sweep_delay=2.0)


def autorestart(restart: int, attempt_count: int = 2, delay: int = 1) -> dict[str, int]:
    return {"restart": restart, "attempt_count": attempt_count, "delay": delay}


async def claim_all(client: Client, count: int) -> list[dict[str, Any]]:
    """Claim until ``count`` streams came (a restarted stream shows ``pending`` a moment
    before its queue token is published)."""
    claimed: list[dict[str, Any]] = []

    async def enough() -> bool:
        claimed.extend(await claim(client))
        return len(claimed) >= count

    await wait_for(enough, timeout=10)
    return claimed


async def fail(client: Client, *stream_ids: str, version: int = 1) -> dict[str, Any]:
    return await send_feedback(
        client,
        *(
            {"stream_id": sid, "status": "failure", "version": version, "error": "connection lost"}
            for sid in stream_ids
        ),
    )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def wait_status(client: Client, stream_id: str, status: str) -> None:
    async def reached() -> bool:
        return bool((await get_stream(client, stream_id))["status"] == status)

    await wait_for(reached, timeout=20)


async def sweep_runs(database: Database) -> int:
    lease = await database.leases.find_one({"_id": SWEEP})
    return int(lease["runs"]) if lease else 0


async def wait_sweeps(database: Database, count: int) -> None:
    """Let the due-time sweep start ``count`` more periods (it runs them shortly after)."""
    target = await sweep_runs(database) + count

    async def done() -> bool:
        return await sweep_runs(database) >= target

    await wait_for(done, timeout=20)


async def test_failed_stream_is_restarted_until_attempts_are_used_up(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    stream_id = await create_pending(client, autorestart=autorestart(1, attempt_count=2, delay=1))
    not_yet_restarted = {
        "restart": 1,
        "attempt_count": 2,
        "delay": 1,
        "current_attempt": 0,
        "last_attempt_time": None,
        "status": "enabled",
    }
    assert (await get_stream(client, stream_id))["autorestart"] == not_yet_restarted
    with running(worker("autorestart_worker", short(settings))):
        for attempt in (1, 2):
            claimed = await claim_all(client, 1)
            assert [(s["stream_id"], s["status"], s["version"]) for s in claimed] == [
                (stream_id, "in_progress", 1)
            ]
            answer = await fail(client, stream_id)
            assert answer["streams"] == {
                "modified": [{"stream_id": stream_id, "status": "failure", "version": 1}],
                "unmodified": [],
            }
            failed = await get_stream(client, stream_id)
            assert failed["status"] == "failure"
            assert failed["autorestart"]["status"] == "in_progress"
            assert failed["autorestart"]["current_attempt"] == attempt - 1

            await wait_status(client, stream_id, "pending")
            restarted = await get_stream(client, stream_id)
            assert restarted["version"] == 1
            assert restarted["last_error"] == "connection lost"
            state = restarted["autorestart"]
            assert (state["current_attempt"], state["status"]) == (attempt, "enabled")
            assert state["last_attempt_time"] is not None
            failure_row = [
                r for r in await stream_log(database, stream_id) if r["status"] == "failure"
            ]
            waited = parse_time(state["last_attempt_time"]) - failure_row[-1]["log_time"]
            assert waited >= timedelta(seconds=0.99), waited  # the attempt waited ``delay``

        assert [(r["status"], r["version"]) for r in await stream_log(database, stream_id)] == [
            (status, 1)
            for status in (
                "pending",
                "in_progress",
                "failure",
                "restart",
                "pending",
                "in_progress",
                "failure",
                "restart",
                "pending",
            )
        ]

        # the third failure uses up the attempts; a control stream shows restarts still run
        control = await create_pending(client, autorestart=autorestart(1, attempt_count=5, delay=1))
        claimed = await claim_all(client, 2)
        assert sorted(s["stream_id"] for s in claimed) == sorted([stream_id, control])
        answer = await fail(client, stream_id, control)
        assert len(answer["streams"]["modified"]) == 2
        given_up = await get_stream(client, stream_id)
        assert given_up["status"] == "failure"
        assert given_up["autorestart"]["status"] == "failed"
        assert given_up["autorestart"]["current_attempt"] == 2

        await wait_status(client, control, "pending")
        await wait_sweeps(database, 2)
        still = await get_stream(client, stream_id)
        assert (still["status"], still["autorestart"]["status"]) == ("failure", "failed")
        assert (await log_statuses(database, stream_id)).count("restart") == 2

    # back to pending by hand: the attempts start again
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "pending"})
    assert resp.status == 204, await resp.text()
    reset = await get_stream(client, stream_id)
    assert reset["status"] == "pending"
    assert reset["autorestart"] == not_yet_restarted


async def test_restart_zero_is_disabled_and_never_restarted(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    stream_id = await create_pending(client, autorestart=autorestart(0, attempt_count=3, delay=1))
    control = await create_pending(client, autorestart=autorestart(1, attempt_count=3, delay=1))
    assert (await get_stream(client, stream_id))["autorestart"]["status"] == "disabled"
    with running(worker("autorestart_worker", short(settings))):
        assert sorted(s["stream_id"] for s in await claim(client)) == sorted([stream_id, control])
        await fail(client, stream_id, control)
        failed = await get_stream(client, stream_id)
        assert failed["status"] == "failure"
        assert failed["autorestart"]["status"] == "disabled"

        await wait_status(client, control, "pending")  # restarts do run ...
        await wait_sweeps(database, 2)
        still = await get_stream(client, stream_id)  # ... but not this one
        assert still["status"] == "failure"
        assert still["autorestart"]["status"] == "disabled"
        assert still["autorestart"]["current_attempt"] == 0
        assert still["autorestart"]["last_attempt_time"] is None
        assert await log_statuses(database, stream_id) == ["pending", "in_progress", "failure"]


async def test_sweep_restarts_a_due_stream_whose_message_was_lost(
    settings: Settings, client: Client, database: Database
) -> None:
    """A failure whose delayed message never reached the broker: the stream says the attempt
    is due; the periodic sweep restarts it, once."""
    stream_id = await create_pending(
        client, status="pause", autorestart=autorestart(1, attempt_count=3, delay=1)
    )
    due = datetime.now().astimezone() - timedelta(seconds=5)
    result = await database.streams.update_one(
        {"_id": stream_id},
        {
            "$set": {
                "status": "failure",
                "last_error": "connection lost",
                "autorestart.status": "in_progress",
                "autorestart.due_at": due,
            }
        },
    )
    assert result.modified_count == 1
    with running(worker("autorestart_worker", short(settings))):
        await wait_status(client, stream_id, "pending")
        await wait_sweeps(database, 3)
        assert await log_statuses(database, stream_id) == ["pause", "restart", "pending"]
        state = (await get_stream(client, stream_id))["autorestart"]
        assert (state["current_attempt"], state["status"]) == (1, "enabled")
        # the restart published a queue token: the stream can be claimed
        assert [s["stream_id"] for s in await claim_all(client, 1)] == [stream_id]


async def test_killed_worker_loses_no_restart(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """kill -9 the autorestart worker while restarts are due (delayed messages in its hands,
    some restarts done, maybe one half done); a new worker restarts every stream once."""
    count = 12
    ids = [
        await create_pending(client, autorestart=autorestart(1, attempt_count=3, delay=2))
        for _ in range(count)
    ]
    s = short(settings)
    with running(worker("autorestart_worker", s)) as (first,):
        assert sorted(x["stream_id"] for x in await claim(client, limit=50)) == sorted(ids)
        answer = await fail(client, *ids)
        assert len(answer["streams"]["modified"]) == count

        async def some_restarted() -> bool:
            return bool(await database.streams.count_documents({"status": "pending"}))

        await wait_for(some_restarted, timeout=20, interval=0.05)
        first.kill()
    restarted_before_kill = await database.streams.count_documents({"status": "pending"})
    assert restarted_before_kill >= 1

    expected = ["pending", "in_progress", "failure", "restart", "pending"]
    with running(worker("autorestart_worker", s)):

        async def all_restarted() -> bool:
            return all([await log_statuses(database, sid) == expected for sid in ids])

        await wait_for(all_restarted, timeout=30)
        # every stream has a token: claim until all are handed out, none twice
        handed: list[str] = []

        async def all_claimed() -> bool:
            handed.extend(x["stream_id"] for x in await claim(client, limit=50))
            return len(handed) >= count

        await wait_for(all_claimed, timeout=20, interval=0.5)
        assert sorted(handed) == sorted(ids)
        await wait_sweeps(database, 2)
        assert await claim(client, limit=50) == []
    for sid in ids:
        stream = await get_stream(client, sid)
        assert stream["status"] == "in_progress"
        assert stream["autorestart"]["current_attempt"] == 1
        assert await log_statuses(database, sid) == [*expected, "in_progress"]


async def test_restart_waits_for_the_latest_failure(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """The message armed by an earlier failure must not restart a later one early: failure,
    PATCH back to pending, claim, failure again 1.5 s later -> the restart comes ``delay``
    after the second failure, not after the first."""
    stream_id = await create_pending(client, autorestart=autorestart(1, attempt_count=3, delay=3))
    with running(worker("autorestart_worker", short(settings))):
        assert [s["stream_id"] for s in await claim(client)] == [stream_id]
        await fail(client, stream_id)
        await asyncio.sleep(1.5)
        resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "pending"})
        assert resp.status == 204, await resp.text()
        assert [s["stream_id"] for s in await claim(client)] == [stream_id]
        await fail(client, stream_id)

        await wait_status(client, stream_id, "pending")
        found = await stream_log(database, stream_id)
        assert [r["status"] for r in found] == [
            "pending",
            "in_progress",
            "failure",
            "pending",
            "in_progress",
            "failure",
            "restart",
            "pending",
        ]
        waited = found[6]["log_time"] - found[5]["log_time"]
        assert waited >= timedelta(seconds=2.99), waited
        assert (await get_stream(client, stream_id))["autorestart"]["current_attempt"] == 1
