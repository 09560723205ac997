"""kill -9 the embedded MongoDB-wire server under create and feedback load.

Every write the service acknowledges was journaled first (``LUNA_STREAMS_MONGO_JOURNAL``,
on by default): after the server is killed and started again on the same data, every
acknowledged create is there with its log row, and every feedback answered ``modified``
kept its status change and its log row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import open_database
from tests.fault.figures import BODY, Figures
from tests.processes import free_port
from tests.services import EmbeddedServer

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("LUNA_STREAMS_MONGO_URI")),
    reason="kills an embedded server of its own; not possible with an external MongoDB",
)
CLAIMED = 200
CREATORS = 8


@pytest.mark.slow
async def test_kill_the_embedded_server_loses_nothing_acknowledged(settings: Settings) -> None:
    figures = Figures("kill -9 the embedded server under create and feedback load")
    server = EmbeddedServer(tempfile.mkdtemp(prefix="luna-streams-kill-mongo-"), free_port())
    server.start()
    s = settings.model_copy(update={"mongo_uri": server.uri, "feedback_timeout": 4.0})
    worker = FeedbackWorker(s)
    created: list[str] = []
    finished: list[str] = []  # streams whose "done" was answered modified
    try:
        await worker.start()
        async with TestClient(TestServer(create_app(s))) as client:
            for i in range(CLAIMED):
                resp = await client.post("/1/streams", json={**BODY, "name": f"c{i}"})
                assert resp.status == 201, await resp.text()
            resp = await client.post(
                "/1/streams/processing/queue", json={"filters": {}, "limit": CLAIMED}
            )
            todo = [st["stream_id"] for st in (await resp.json())["streams"]]
            assert len(todo) == CLAIMED
            stop = asyncio.Event()

            async def creator(n: int) -> None:
                seq = 0
                while not stop.is_set():
                    seq += 1
                    figures.requests_sent += 1
                    resp = await client.post("/1/streams", json={**BODY, "name": f"k{n}.{seq}"})
                    body = await resp.json()
                    if resp.status == 201:
                        created.append(body["stream_id"])
                    else:
                        assert resp.status >= 500 and "error_code" in body, body
                        figures.request_errors += 1
                        await asyncio.sleep(0.1)

            async def agent() -> None:
                while todo and not stop.is_set():
                    stream_id = todo[0]
                    item = {"stream_id": stream_id, "version": 1, "status": "done", "error": None}
                    figures.requests_sent += 1
                    resp = await client.post(
                        "/1/streams/processing/feedback", json={"streams": [item]}
                    )
                    body = await resp.json()
                    if resp.status != 200:
                        figures.request_errors += 1
                        await asyncio.sleep(0.1)
                        continue
                    todo.pop(0)
                    if body["streams"]["modified"]:
                        finished.append(stream_id)

            async def killer() -> None:
                await asyncio.sleep(2.0)
                await asyncio.to_thread(server.kill)
                figures.faults_injected += 1
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)
                await asyncio.sleep(3.0)
                stop.set()

            await asyncio.gather(killer(), agent(), *(creator(n) for n in range(CREATORS)))
        await worker.stop(5)
        database = await open_database(server.uri, s.db_name)
        try:
            stored = {
                d["_id"]: d["status"]
                async for d in database.streams.find({"_id": {"$in": created + finished}})
            }
            rows = {
                (r["stream_id"], r["status"])
                async for r in database.stream_logs.find(
                    {"stream_id": {"$in": created + finished}}, {"stream_id": 1, "status": 1}
                )
            }
        finally:
            await database.close()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(server.log_path)
    lost_creates = [sid for sid in created if sid not in stored or (sid, "pending") not in rows]
    lost_changes = [
        sid for sid in finished if stored.get(sid) != "done" or (sid, "done") not in rows
    ]
    figures.streams_lost_from_queue = len(lost_creates)
    figures.acknowledged_feedback_lost = len(lost_changes)
    figures.extra = {"acknowledged_creates": len(created), "acknowledged_done": len(finished)}
    figures.report()
    assert len(created) > 20 and finished, figures
    figures.assert_invariants()
