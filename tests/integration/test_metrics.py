"""The metrics each process serves say what happened: claims, feedback outcomes and lag,
streams entering failure and handler_lost, autorestarts, dead letters, the fleet by status,
each process's dependencies (real RabbitMQ and MongoDB; the queue worker in this process).

The library's metrics live in the default registry, shared by everything this process runs,
so each test reads them before and after and asserts on the difference.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta
from typing import Any

import aio_pika
from prometheus_client import REGISTRY

from gateway.keys import BROKER
from queue_worker.worker import FeedbackWorker
from shared.core.clock import now_utc
from shared.core.settings import Settings
from shared.messaging.publisher import BrokerTokenPublisher
from shared.services.downgrade import downgrade_silent
from shared.services.fleet import take_census
from shared.services.restarts import restart_due
from shared.store.changes import StreamChanges
from shared.store.mongo import Database
from tests.integration.factories import Client, create_stream, set_fields, v1_body

Json = dict[str, Any]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def scrape(client: Client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


def value(text: str, series: str) -> float:
    """The value of one series (``name{labels}`` as exposed) in a scrape."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} not in the scrape"
    return float(match[1])


async def claim(client: Client, limit: int = 10) -> list[str]:
    resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": limit})
    answer = await resp.json()
    assert resp.status == 200, answer
    return [stream["stream_id"] for stream in answer["streams"]]


async def feedback(client: Client, items: list[Json]) -> Json:
    resp = await client.post("/1/streams/processing/feedback", json={"streams": items})
    answer: Json = await resp.json()
    assert resp.status == 200, answer
    return answer["streams"]  # type: ignore[no-any-return]


async def test_census_counts_streams_by_status_and_ages_the_oldest_pending(
    client: Client, database: Database
) -> None:
    first = await create_stream(client, v1_body())
    await create_stream(client, v1_body())
    await create_stream(client, v1_body(status="pause"))
    queued = now_utc() - timedelta(seconds=120)
    await set_fields(database, first, queued_at=queued)
    await take_census(database)
    assert sample("luna_streams_streams", status="pending") == 2
    assert sample("luna_streams_streams", status="pause") == 1
    assert sample("luna_streams_streams", status="in_progress") == 0
    assert 119 <= sample("luna_streams_oldest_pending_age_seconds") < 180
    assert sample("luna_streams_fleet_census_timestamp_seconds") >= time.time() - 60
    # ``first``'s token no longer matches its queued_at: only the other is claimed
    assert len(await claim(client)) == 1
    await take_census(database)
    assert sample("luna_streams_streams", status="pending") == 1
    assert sample("luna_streams_streams", status="in_progress") == 1
    await set_fields(database, first, status="pause")
    await take_census(database)
    assert sample("luna_streams_streams", status="pending") == 0
    assert sample("luna_streams_streams", status="pause") == 2
    assert sample("luna_streams_oldest_pending_age_seconds") == 0


async def test_claims_feedback_outcomes_lag_and_failures_are_counted(
    client: Client, queue_worker: FeedbackWorker
) -> None:
    ids = [await create_stream(client, v1_body()) for _ in range(3)]
    before = {
        "modified": sample("luna_streams_feedback_items_total", outcome="modified"),
        "unmodified": sample("luna_streams_feedback_items_total", outcome="unmodified"),
        "applied": sample("luna_streams_feedback_batches_total", outcome="applied"),
        "failure": sample("luna_streams_stream_status_changes_total", status="failure"),
        "in_progress": sample("luna_streams_stream_status_changes_total", status="in_progress"),
        "lag": sample("luna_streams_feedback_lag_seconds_count"),
        "lag_sum": sample("luna_streams_feedback_lag_seconds_sum"),
    }
    assert sorted(await claim(client)) == sorted(ids)
    assert await claim(client) == []
    text = await scrape(client)
    assert value(text, 'luna_streams_claims_total{outcome="streams"}') == 1
    assert value(text, 'luna_streams_claims_total{outcome="empty"}') == 1
    assert value(text, "luna_streams_claimed_streams_total") == 3
    assert value(text, "luna_streams_claim_duration_seconds_count") == 2
    answer = await feedback(
        client,
        [
            {"stream_id": ids[0], "status": "in_progress", "version": 1},
            {"stream_id": ids[1], "status": "failure", "version": 1, "error": "no signal"},
            {"stream_id": ids[2], "status": "in_progress", "version": 7},
        ],
    )
    assert (len(answer["modified"]), len(answer["unmodified"])) == (2, 1)
    assert sample("luna_streams_feedback_items_total", outcome="modified") == before["modified"] + 2
    assert (
        sample("luna_streams_feedback_items_total", outcome="unmodified")
        == before["unmodified"] + 1
    )
    assert sample("luna_streams_feedback_batches_total", outcome="applied") == before["applied"] + 1
    assert (
        sample("luna_streams_stream_status_changes_total", status="failure")
        == before["failure"] + 1
    )
    assert (
        sample("luna_streams_stream_status_changes_total", status="in_progress")
        == before["in_progress"] + 3
    )
    assert sample("luna_streams_feedback_lag_seconds_count") == before["lag"] + 1
    # the registry is the process's: earlier tests' reports are in the sum too
    assert 0 <= sample("luna_streams_feedback_lag_seconds_sum") - before["lag_sum"] < 60


async def test_handler_lost_and_autorestarts_are_counted(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    changes = StreamChanges(database, BrokerTokenPublisher(client.app[BROKER]))
    lost = await create_stream(client, v1_body())
    restarting = await create_stream(
        client, v1_body(autorestart={"restart": 1, "attempt_count": 1, "delay": 1})
    )
    assert sorted(await claim(client)) == sorted([lost, restarting])
    before = {
        "lost": sample("luna_streams_stream_status_changes_total", status="handler_lost"),
        "restarted": sample("luna_streams_autorestarts_total", outcome="restarted"),
        "exhausted": sample("luna_streams_autorestarts_total", outcome="exhausted"),
    }
    # the agent of ``lost`` went silent a minute ago
    await set_fields(database, lost, **{"claim.claimed_at": now_utc() - timedelta(minutes=1)})
    await feedback(client, [{"stream_id": restarting, "status": "failure", "version": 1}])
    assert await downgrade_silent(database, changes, period=30) == 1
    assert (
        sample("luna_streams_stream_status_changes_total", status="handler_lost")
        == before["lost"] + 1
    )
    assert await restart_due(database, changes, now=now_utc() + timedelta(seconds=2)) == 1
    assert sample("luna_streams_autorestarts_total", outcome="restarted") == before["restarted"] + 1
    await set_fields(database, lost, status="pause")  # out of the way of the next claim
    assert await claim(client) == [restarting]
    await feedback(client, [{"stream_id": restarting, "status": "failure", "version": 1}])
    assert sample("luna_streams_autorestarts_total", outcome="exhausted") == before["exhausted"] + 1


async def test_the_gateway_samples_its_dependencies_consumers_and_dead_letters(
    client: Client, settings: Settings, queue_worker: FeedbackWorker
) -> None:
    """A message no worker can apply is dead-lettered: the gateway's gauge shows it, and the
    queue worker's probe says its consumer runs."""
    before = sample("luna_streams_feedback_batches_total", outcome="rejected")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(json.dumps({"streams": "not a list"}).encode()),
            routing_key=f"{settings.queue_prefix}.feedback",
        )
    deadline = time.monotonic() + 20
    while True:
        text = await scrape(client)
        ready = (
            value(text, "luna_streams_feedback_dead_letter_messages") == 1
            and value(text, "luna_streams_feedback_queue_consumers") == 1
        )
        if ready or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert value(text, "luna_streams_feedback_dead_letter_messages") == 1
    assert value(text, "luna_streams_feedback_queue_consumers") == 1
    assert value(text, 'luna_streams_dependency_up{dependency="mongodb"}') == 1
    assert value(text, 'luna_streams_dependency_up{dependency="rabbitmq"}') == 1
    assert value(text, "luna_streams_event_subscribers") == 0
    assert value(text, "luna_streams_feedback_backlog_messages") == 0
    assert sample("luna_streams_feedback_batches_total", outcome="rejected") == before + 1
    assert sample("luna_streams_consumer_up") == 1
