"""Cut every RabbitMQ connection (gateway and queue worker, through a TCP proxy) while
agents claim and report: no stream lost or claimed twice, no acknowledged feedback lost.

The gateway and the worker run in this process here (the proxy shares their loop)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.fault.figures import (
    Figures,
    acknowledged_markers,
    applied_markers,
    claim_counts,
    create_streams,
    marked_feedback,
)
from tests.tcp_proxy import TcpProxy

STREAMS = 120
CUTS = 3
AGENTS = 2


@pytest.mark.slow
async def test_cut_broker_connections_under_load(settings: Settings, database: Database) -> None:
    figures = Figures("cut every RabbitMQ connection under load")
    url = urlsplit(settings.amqp_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 5672).start()
    proxied = settings.amqp_url.replace(
        f"{url.hostname}:{url.port or 5672}", f"127.0.0.1:{proxy.port}"
    )
    proxied += ("&" if "?" in proxied else "?") + "reconnect_interval=0.5"
    cut_settings = settings.model_copy(update={"amqp_url": proxied, "feedback_timeout": 4.0})
    feedback_worker = FeedbackWorker(cut_settings)
    claimed: list[str] = []
    acknowledged: list[str] = []
    last_ok = time.monotonic()
    recover: list[float] = []
    try:
        await feedback_worker.start()
        async with TestClient(TestServer(create_app(cut_settings))) as api:
            base = str(api.make_url("")).rstrip("/")
            await create_streams(base, STREAMS)
            stop = False
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:

                async def post(path: str, body: dict[str, object]) -> dict[str, object] | None:
                    figures.requests_sent += 1
                    try:
                        async with s.post(f"{base}{path}", json=body) as resp:
                            data = await resp.json()
                            if resp.status == 200:
                                return data  # type: ignore[no-any-return]
                            assert resp.status >= 500 and "error_code" in data, data
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    figures.request_errors += 1
                    await asyncio.sleep(0.1)
                    return None

                async def agent(n: int) -> None:
                    nonlocal last_ok
                    held: list[str] = []
                    seq = 0
                    while not stop:
                        data = await post(
                            "/1/streams/processing/queue", {"filters": {}, "limit": 5}
                        )
                        if data is not None:
                            got = [st["stream_id"] for st in data["streams"]]  # type: ignore[index, union-attr]
                            claimed.extend(got)
                            held.extend(got)
                        if not held:
                            await asyncio.sleep(0.2)
                            continue
                        seq += 1
                        items = marked_feedback(held, seq)
                        data = await post("/1/streams/processing/feedback", {"streams": items})
                        if data is not None:
                            last_ok = time.monotonic()
                            acknowledged.extend(acknowledged_markers(items, data))

                async def cutter() -> None:
                    nonlocal stop
                    for _ in range(CUTS):
                        await asyncio.sleep(1.5)
                        proxy.cut()
                        cut_at = time.monotonic()
                        figures.faults_injected += 1
                        while last_ok < cut_at:
                            assert time.monotonic() < cut_at + 60, "no feedback since the cut"
                            await asyncio.sleep(0.05)
                        recover.append(last_ok - cut_at)
                    # drained: nothing pending any more (a claim applied in MongoDB whose
                    # answer was lost to a cut leaves its stream in_progress, unanswered)
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and await database.streams.count_documents(
                        {"status": "pending"}
                    ):
                        await asyncio.sleep(0.2)
                    stop = True

                async def progress() -> None:
                    while not stop:
                        await asyncio.sleep(5)
                        print(
                            "progress",
                            figures.requests_sent,
                            figures.request_errors,
                            len(set(claimed)),
                            round(time.monotonic() - last_ok, 1),
                            flush=True,
                        )

                await asyncio.gather(progress(), cutter(), *(agent(n) for n in range(AGENTS)))
    finally:
        await feedback_worker.stop(5)
        await proxy.close()
    counts = await claim_counts(database)
    figures.streams_claimed_twice = sum(1 for n in counts.values() if n > 1) + (
        len(claimed) - len(set(claimed))
    )
    figures.streams_lost_from_queue = await database.streams.count_documents({"status": "pending"})
    markers = await applied_markers(database)
    figures.acknowledged_feedback_lost = sum(1 for m in acknowledged if markers[m] == 0)
    figures.time_to_recover_s = round(max(recover, default=0.0), 2)
    in_progress = await database.streams.count_documents({"status": "in_progress"})
    figures.extra = {
        "claimed_by_agents": len(set(claimed)),
        "in_progress": in_progress,
        "applied_but_unanswered": in_progress - len(set(claimed)),
        "acknowledged_items": len(acknowledged),
        "applied_twice": sum(1 for n in markers.values() if n > 1),
    }
    figures.report()
    figures.assert_invariants()
    assert figures.extra["applied_twice"] == 0
    assert in_progress == STREAMS
