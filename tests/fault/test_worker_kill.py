"""kill -9 queue workers mid-batch under feedback load: acknowledged feedback is never
lost, and no report is applied twice (redelivered batches are idempotent)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.fault.figures import (
    Figures,
    acknowledged_markers,
    applied_markers,
    create_streams,
    marked_feedback,
)
from tests.processes import gateway, running, worker

STREAMS = 20
AGENTS = 4
KILLS = 3
#: the longest a recovery may take before the test fails (instead of hanging)
RECOVERY_DEADLINE = 60.0


@pytest.mark.slow
async def test_kill_queue_worker_mid_batch(settings: Settings, database: Database) -> None:
    figures = Figures("kill -9 the queue worker mid feedback batch")
    settings = settings.model_copy(update={"feedback_timeout": 4.0})
    api = gateway(settings)
    workers = [worker("queue_worker", settings), worker("queue_worker", settings)]
    acknowledged: list[str] = []
    recover: list[float] = []
    with running(api, *workers):
        await create_streams(api.url, STREAMS)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(
                f"{api.url}/1/streams/processing/queue", json={"filters": {}, "limit": STREAMS}
            ) as resp:
                ids = [s["stream_id"] for s in (await resp.json())["streams"]]
            assert len(ids) == STREAMS
            stop = False
            last_ok = time.monotonic()

            async def agent(n: int) -> None:
                nonlocal last_ok
                mine = ids[n::AGENTS]
                seq = 0
                while not stop:
                    seq += 1
                    items = marked_feedback(mine, seq)
                    figures.requests_sent += 1
                    try:
                        async with session.post(
                            f"{api.url}/1/streams/processing/feedback", json={"streams": items}
                        ) as resp:
                            body = await resp.json()
                            if resp.status != 200:
                                figures.request_errors += 1
                                continue
                    except (aiohttp.ClientError, TimeoutError):
                        figures.request_errors += 1
                        continue
                    acknowledged.extend(acknowledged_markers(items, body))
                    last_ok = time.monotonic()

            async def killer() -> None:
                nonlocal stop
                for _ in range(KILLS):
                    await asyncio.sleep(1.5)
                    victim = workers[0]
                    victim.kill()
                    killed = time.monotonic()
                    figures.faults_injected += 1
                    recovery_deadline = killed + RECOVERY_DEADLINE
                    while last_ok < killed:
                        assert time.monotonic() < recovery_deadline, "no feedback since the kill"
                        await asyncio.sleep(0.05)
                    recover.append(last_ok - killed)
                    victim.start()  # the same component: running() stops it at the end
                await asyncio.sleep(1.0)
                stop = True

            await asyncio.gather(killer(), *(agent(n) for n in range(AGENTS)))
    markers = await applied_markers(database)
    figures.acknowledged_feedback_lost = sum(1 for m in acknowledged if markers[m] == 0)
    duplicated = sum(1 for n in markers.values() if n > 1)
    figures.time_to_recover_s = round(max(recover, default=0.0), 2)
    figures.extra = {"acknowledged_items": len(acknowledged), "applied_twice": duplicated}
    figures.report()
    figures.assert_invariants()
    assert duplicated == 0
    assert len(acknowledged) > STREAMS
