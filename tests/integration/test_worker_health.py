"""Worker health and graceful shutdown.

``GET /healthcheck?include_luna_services=1`` on the gateway names the workers that do not run
(no consumer on the feedback queue, no recent heartbeat of the autorestart worker or the log
janitor) and answers 200 once they run. SIGTERM stops every worker process with exit code 0
within LUNA_STREAMS_SHUTDOWN_TIMEOUT, without losing the jobs it held.
"""

from __future__ import annotations

import time
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient

from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.mongo import Database
from tests.integration.factories import short_periods, v1_body
from tests.processes import Component, running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

Client = TestClient[Any, Any]
SHUTDOWN = 5.0
HEALTH = "/healthcheck?include_luna_services=1"
#: a minimal valid v1 create body whose failures are restarted after 6 s
RESTARTED_AFTER_6_S = v1_body(autorestart={"restart": 1, "attempt_count": 3, "delay": 6})


def short(settings: Settings) -> Settings:
    return short_periods(settings, shutdown_timeout=SHUTDOWN)


def stop(component: Component) -> tuple[int, float]:
    """SIGTERM; the exit code (-9 when it had to be killed) and how long it took."""
    started = time.monotonic()
    code = component.terminate(timeout=SHUTDOWN + 5)
    return code, time.monotonic() - started


async def wait_consumers(settings: Settings) -> None:
    """Until a queue worker consumes the feedback queue (seen on a fresh channel)."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        name = QueueNames(settings.queue_prefix).feedback

        async def consuming() -> bool:
            queue = await channel.declare_queue(name, passive=True)
            return bool(queue.declaration_result.consumer_count)

        await wait_for(consuming, timeout=30)


async def health(client: Client) -> tuple[int, dict[str, Any]]:
    resp = await client.get(HEALTH)
    answer: dict[str, Any] = await resp.json()
    return resp.status, answer


async def test_healthcheck_names_missing_workers_and_workers_stop_on_sigterm(
    settings: Settings, client: Client
) -> None:
    resp = await client.get("/healthcheck")
    assert resp.status == 200, await resp.text()  # MongoDB and RabbitMQ answer

    status, answer = await health(client)
    assert status == 502, answer
    assert answer["error_code"] == 2
    assert answer["detail"] == "Healthcheck failed: rabbitmq/queue-worker, workers"
    errors = {e["service"]: e["error"] for e in answer["errors"]}
    assert "no queue worker" in errors["rabbitmq/queue-worker"]
    assert errors["workers"].endswith("no recent heartbeat from: autorestart-worker, log-janitor")

    s = short(settings)
    components = (
        worker("queue_worker", s),
        worker("autorestart_worker", s),
        worker("log_janitor", s),
    )
    with running(*components):

        async def heartbeats_seen() -> bool:
            status, answer = await health(client)
            return status == 200 or "workers" not in {e["service"] for e in answer["errors"]}

        await wait_for(heartbeats_seen, timeout=30)
        await wait_consumers(settings)  # SIGTERM before the handlers exist would be -15

        # each worker stops on SIGTERM, with exit code 0, within the shutdown timeout
        for component in components:
            code, took = stop(component)
            assert (component.module, code) == (component.module, 0)
            assert took < SHUTDOWN + 1, (component.module, took)


async def test_healthcheck_is_ok_when_every_worker_runs(settings: Settings, client: Client) -> None:
    s = short(settings)
    components = (
        worker("queue_worker", s),
        worker("autorestart_worker", s),
        worker("log_janitor", s),
    )
    with running(*components) as (queue, _, _):
        last: list[Any] = []

        async def healthy() -> bool:
            last[:] = await health(client)
            return bool(last[0] == 200)

        try:
            await wait_for(healthy, timeout=15)
        except TimeoutError:
            pytest.fail(f"never healthy: {last}")
        assert set(last[1]) == {"execution_time"}, last

        # the queue worker goes away: named at once (its heartbeat is its consumer)
        assert stop(queue)[0] == 0
        status, answer = await health(client)
        assert status == 502, answer
        assert answer["detail"] == "Healthcheck failed: rabbitmq/queue-worker"


async def test_sigterm_stops_at_once_and_the_next_worker_restarts_what_is_due(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """Autorestarts are due times in MongoDB, not messages a worker holds: a worker stopped
    by SIGTERM before they are due exits 0 at once, and the next worker restarts each
    stream once."""
    ids = []
    for _ in range(3):
        resp = await client.post("/1/streams", json=RESTARTED_AFTER_6_S)
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json())["stream_id"])
    s = short(settings)
    first = worker("autorestart_worker", s)
    with running(first):

        async def up() -> bool:
            return bool(await database.leases.find_one({"_id": "autorestart:autorestart_sweep"}))

        await wait_for(up, timeout=30)
        resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": 10})
        assert sorted(x["stream_id"] for x in (await resp.json())["streams"]) == sorted(ids)
        items = [{"stream_id": sid, "status": "failure", "version": 1} for sid in ids]
        resp = await client.post("/1/streams/processing/feedback", json={"streams": items})
        assert len((await resp.json())["streams"]["modified"]) == 3
        code, took = stop(first)  # the attempts are due in 6 s: nothing restarted yet
        assert code == 0 and took < SHUTDOWN + 1, (code, took)
    assert await database.streams.count_documents({"status": "failure"}) == 3

    with running(worker("autorestart_worker", s)):

        async def all_restarted() -> bool:
            return await database.streams.count_documents({"status": "pending"}) == 3

        await wait_for(all_restarted, timeout=30)
    for sid in ids:
        rows = await database.stream_logs.find({"stream_id": sid}).to_list()
        rows.sort(key=lambda row: row["log_time"])
        assert [r["status"] for r in rows] == [
            "pending",
            "in_progress",
            "failure",
            "restart",
            "pending",
        ]
