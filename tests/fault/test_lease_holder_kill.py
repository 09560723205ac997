"""kill -9 the autorestart worker that holds a periodic job's lease: the other replica
takes the job over, and the job still has its effect (a silent stream is downgraded)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.core.settings import Settings
from shared.runtime.job_worker import AUTORESTART
from shared.store.mongo import Database
from tests.fault.figures import BODY, Figures
from tests.processes import running, worker


@pytest.mark.slow
async def test_kill_the_lease_holder(settings: Settings, database: Database) -> None:
    figures = Figures("kill -9 the scheduler holding a periodic job's lease")
    s = settings.model_copy(
        update={
            "stream_status_obsoleting_period": 3.0,
            "stream_status_obsoleting_interval": 1.0,
            "reconcile_interval": 1.0,
            "autorestart_sweep_interval": 1.0,
        }
    )
    replicas = [worker("autorestart_worker", s), worker("autorestart_worker", s)]
    job = f"{AUTORESTART}:downgrade"
    with running(*replicas):

        async def lease() -> dict[str, object] | None:
            return await database.leases.find_one({"_id": job})

        deadline = time.monotonic() + 30
        while (doc := await lease()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert doc is not None, "no replica ran the downgrade job"
        owner = str(doc["owner"])
        victim = next(r for r in replicas if owner.endswith(f":{r.process.pid}"))  # type: ignore[union-attr]
        victim.kill()
        killed = time.monotonic()
        figures.faults_injected += 1
        # a new period is started by the other replica
        while time.monotonic() - killed < 30:
            doc = await lease()
            if doc and doc["owner"] != owner:
                break
            await asyncio.sleep(0.2)
        assert doc and doc["owner"] != owner, "the job was not taken over"
        figures.time_to_recover_s = round(time.monotonic() - killed, 2)
        # and it still works: a claimed stream without feedback comes back to the queue
        async with TestClient(TestServer(create_app(s))) as client:
            resp = await client.post("/1/streams", json=BODY)
            sid = (await resp.json())["stream_id"]
            resp = await client.post(
                "/1/streams/processing/queue", json={"filters": {"stream_ids": [sid]}, "limit": 1}
            )
            assert len((await resp.json())["streams"]) == 1
            figures.requests_sent += 3
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                stream = await database.streams.find_one({"_id": sid}, {"status": 1})
                if stream and stream["status"] == "pending":
                    break
                await asyncio.sleep(0.3)
        statuses = [
            row["status"]
            async for row in database.stream_logs.find({"stream_id": sid}).sort("log_time", 1)
        ]
    assert statuses[-3:] == ["handler_lost", "restart", "pending"], statuses
    figures.extra = {"old_owner": owner, "new_owner": doc["owner"]}
    figures.report()
    figures.assert_invariants()
