"""Restart the MongoDB server under load: requests fail cleanly (503) while it is away,
nothing acknowledged is lost, and the service carries on once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import open_database
from tests.fault.figures import (
    BODY,
    Figures,
    acknowledged_markers,
    applied_markers,
    marked_feedback,
)
from tests.processes import free_port
from tests.services import EmbeddedServer

STREAMS = 30

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("LUNA_STREAMS_MONGO_URI")),
    reason="restarts an embedded server of its own; not possible with an external MongoDB",
)


class RestartableMongo(EmbeddedServer):
    """The embedded server as its own process, restarted on the same data and port."""

    def __init__(self) -> None:
        super().__init__(tempfile.mkdtemp(prefix="luna-streams-fault-mongo-"), free_port())

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(self.log_path)


@pytest.mark.slow
async def test_restart_mongodb_under_load(settings: Settings) -> None:
    figures = Figures("restart the MongoDB server under load")
    mongo = RestartableMongo()
    mongo.start()
    s = settings.model_copy(update={"mongo_uri": mongo.uri, "feedback_timeout": 4.0})
    worker = FeedbackWorker(s)
    acknowledged: list[str] = []
    created: list[str] = []
    recover = 0.0
    slowest = [0.0]
    try:
        await worker.start()
        async with TestClient(TestServer(create_app(s))) as client:
            for i in range(STREAMS):
                resp = await client.post("/1/streams", json={**BODY, "name": f"s{i}"})
                created.append((await resp.json())["stream_id"])
            resp = await client.post(
                "/1/streams/processing/queue", json={"filters": {}, "limit": STREAMS}
            )
            ids = [st["stream_id"] for st in (await resp.json())["streams"]]
            assert len(ids) == STREAMS
            stop = False
            last_ok = time.monotonic()

            async def agent(mine: list[str]) -> None:
                nonlocal last_ok
                seq = 0
                while not stop:
                    seq += 1
                    items = marked_feedback(mine, seq)
                    figures.requests_sent += 1
                    started = time.monotonic()
                    resp = await client.post(
                        "/1/streams/processing/feedback", json={"streams": items}
                    )
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    body = await resp.json()
                    if resp.status != 200:
                        assert resp.status >= 500 and "error_code" in body, body
                        figures.request_errors += 1
                        await asyncio.sleep(0.2)
                        continue
                    acknowledged.extend(acknowledged_markers(items, body))
                    last_ok = time.monotonic()
                    # a read while the database may be away: a clean error, never a hang
                    figures.requests_sent += 1
                    got = await client.get(f"/1/streams/{mine[0]}")
                    if got.status != 200:
                        assert got.status == 503, await got.text()
                        figures.request_errors += 1

            async def restarter() -> None:
                nonlocal stop, recover
                await asyncio.sleep(1.5)
                await asyncio.to_thread(mongo.stop)
                figures.faults_injected += 1
                await asyncio.sleep(2.0)
                await asyncio.to_thread(mongo.start)
                back = time.monotonic()
                while last_ok < back:
                    await asyncio.sleep(0.05)
                recover = last_ok - back
                await asyncio.sleep(1.5)
                stop = True

            await asyncio.gather(restarter(), *(agent(ids[n::3]) for n in range(3)))
        database = await open_database(mongo.uri, s.db_name)
        try:
            markers = await applied_markers(database)
            figures.acknowledged_feedback_lost = sum(1 for m in acknowledged if not markers[m])
            stored = await database.streams.count_documents({})
        finally:
            await database.close()
    finally:
        await worker.stop(5)
        mongo.remove()
    figures.time_to_recover_s = round(recover, 2)
    figures.streams_lost_from_queue = STREAMS - stored
    figures.extra = {
        "acknowledged_items": len(acknowledged),
        "applied_twice": sum(1 for n in markers.values() if n > 1),
        "slowest_feedback_s": round(slowest[0], 2),
    }
    figures.report()
    figures.assert_invariants()
    assert figures.extra["applied_twice"] == 0
    # the driver waits for the server (server selection) instead of failing: the outage
    # shows as slow answers, or as 503s once it outlasts the wait
    assert slowest[0] > 1.0 or figures.request_errors > 0, "the restart was not felt"
