"""Feedback over HTTP: the gateway asks a queue worker over RabbitMQ and returns its answer.

The ``queue_worker`` fixture runs a FeedbackWorker on the test's queues in this process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.mongo import Database
from tests.integration.factories import (
    MISSING_ID,
    VIDEO_INFO,
    Client,
    claim,
    claim_ids,
    claimed_streams,
    create_stream,
    get_stream,
    log_rows,
    patch_status,
    queue_depth,
    snapshot,
    v1_body,
)

Json = dict[str, Any]
VERSIONS = pytest.mark.parametrize("version", [1, 2])

PREVIEW: Json = {
    "live": {"url": "http://127.0.0.1:34569/api/1/streams/live"},
    "last_frame": {"url": "http://127.0.0.1:34569/api/1/streams/last_frame"},
}


async def feedback(client: Client, items: list[Json], version: int = 1) -> Json:
    resp = await client.post(f"/{version}/streams/processing/feedback", json={"streams": items})
    answer: Json = await resp.json()
    assert resp.status == 200, answer
    assert set(answer) == {"streams"} and set(answer["streams"]) == {"modified", "unmodified"}
    return answer["streams"]  # type: ignore[no-any-return]


def entry(stream_id: str, status: str, version: int = 1) -> Json:
    return {"stream_id": stream_id, "status": status, "version": version}


def by_id(entries: list[Json]) -> dict[str, Json]:
    return {e["stream_id"]: e for e in entries}


@VERSIONS
async def test_feedback_is_applied(
    client: Client, database: Database, queue_worker: FeedbackWorker, version: int
) -> None:
    running, done, failed = await claimed_streams(client, 3, version)
    answer = await feedback(
        client,
        [
            {
                "stream_id": running,
                "status": "in_progress",
                "version": 1,
                "error": None,
                "video_info": VIDEO_INFO,
                "preview": PREVIEW,
            },
            {"stream_id": done, "status": "done", "version": 1, "video_info": VIDEO_INFO},
            {"stream_id": failed, "status": "failure", "version": 1, "error": "cannot open"},
        ],
        version,
    )
    assert answer == {
        "modified": [entry(running, "in_progress"), entry(done, "done"), entry(failed, "failure")],
        "unmodified": [],
    }

    got = await get_stream(client, running, version)
    assert (got["status"], got["version"], got["last_error"]) == ("in_progress", 1, None)
    assert got["video_info"] == VIDEO_INFO
    assert got["preview"] == PREVIEW
    got = await get_stream(client, done, version)
    assert (got["status"], got["video_info"], got["preview"]) == ("done", VIDEO_INFO, None)
    got = await get_stream(client, failed, version)
    assert (got["status"], got["last_error"], got["video_info"]) == ("failure", "cannot open", None)

    assert await log_rows(database, running) == [
        ("pending", 1),
        ("in_progress", 1),
        ("in_progress", 1),
    ]
    assert await log_rows(database, done) == [("pending", 1), ("in_progress", 1), ("done", 1)]
    assert await log_rows(database, failed) == [("pending", 1), ("in_progress", 1), ("failure", 1)]
    row = await database.stream_logs.find_one({"stream_id": failed, "status": "failure"})
    assert row is not None and (row["error"], row["video_info"]) == ("cannot open", None)
    row = await database.stream_logs.find_one(
        {"stream_id": running, "status": "in_progress", "preview": {"$ne": None}}
    )
    assert row is not None and (row["video_info"], row["preview"]) == (VIDEO_INFO, PREVIEW)
    assert queue_worker.applied_batches == 1


async def test_feedback_keeps_reporting_while_in_progress(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    [stream_id] = await claimed_streams(client, 1)
    for progress in (0.1, 0.5):
        info = VIDEO_INFO | {"progress": progress}
        item = {
            "stream_id": stream_id,
            "status": "in_progress",
            "version": 1,
            "video_info": info,
            "error": "slow",
        }
        answer = await feedback(client, [item])
        assert answer["modified"] == [entry(stream_id, "in_progress")]
        got = await get_stream(client, stream_id)
        assert (got["video_info"]["progress"], got["last_error"]) == (progress, "slow")
    answer = await feedback(client, [{"stream_id": stream_id, "status": "done", "version": 1}])
    assert answer == {"modified": [entry(stream_id, "done")], "unmodified": []}
    got = await get_stream(client, stream_id)
    # an item without video_info leaves the stored one; error null clears last_error
    assert (got["status"], got["last_error"], got["video_info"]["progress"]) == ("done", None, 0.5)
    # done ends processing: the next report changes nothing
    answer = await feedback(
        client, [{"stream_id": stream_id, "status": "in_progress", "version": 1}]
    )
    assert answer == {"modified": [], "unmodified": [entry(stream_id, "done")]}
    assert await log_rows(database, stream_id) == [
        ("pending", 1),
        ("in_progress", 1),
        ("in_progress", 1),
        ("in_progress", 1),
        ("done", 1),
    ]


async def test_feedback_that_may_not_apply_is_unmodified(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    old_version, paused, deleted, ok = await claimed_streams(client, 4)
    pending = await create_stream(client, v1_body(name="pending"))
    resp = await client.put(f"/1/streams/{old_version}", json=v1_body(name="new"))
    assert resp.status == 200 and (await resp.json())["version"] == 2
    await patch_status(client, paused, "pause")
    assert (await client.delete(f"/1/streams/{deleted}")).status == 204
    before = await snapshot(database)

    answer = await feedback(
        client,
        [
            {"stream_id": old_version, "status": "done", "version": 1},
            {"stream_id": paused, "status": "in_progress", "version": 1, "error": "x"},
            {"stream_id": deleted, "status": "failure", "version": 1},
            {"stream_id": MISSING_ID, "status": "done", "version": 3},
            {"stream_id": pending, "status": "in_progress", "version": 1},
            {"stream_id": ok, "status": "in_progress", "version": 2},  # wrong version
        ],
    )
    assert answer == {
        "modified": [],
        "unmodified": [
            entry(old_version, "pending", 2),
            entry(paused, "pause", 1),
            entry(deleted, "not_found", 1),
            entry(MISSING_ID, "not_found", 3),
            entry(pending, "pending", 1),
            entry(ok, "in_progress", 1),
        ],
    }
    assert await snapshot(database) == before  # nothing changed, no log row


async def test_feedback_mixed_batch(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    a, b = await claimed_streams(client, 2)
    answer = await feedback(
        client,
        [
            {"stream_id": a, "status": "failure", "version": 1, "error": "eof"},
            {"stream_id": b, "status": "in_progress", "version": 7},
            {"stream_id": a, "status": "in_progress", "version": 1},  # a is no longer running
        ],
    )
    assert by_id(answer["modified"]) == {a: entry(a, "failure")}
    assert answer["unmodified"] == [entry(b, "in_progress"), entry(a, "failure")]
    assert await log_rows(database, a) == [("pending", 1), ("in_progress", 1), ("failure", 1)]
    assert await log_rows(database, b) == [("pending", 1), ("in_progress", 1)]


@pytest.mark.slow
async def test_feedback_batch_of_100(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    ids: list[str] = []
    for chunk in range(4):
        ids += await asyncio.gather(
            *(create_stream(client, v1_body(name=f"c{chunk}-{i}")) for i in range(25))
        )
    claimed = await claim_ids(client, {}, 100)
    assert sorted(claimed) == sorted(ids)
    items: list[Json] = [
        {"stream_id": sid, "status": "done" if n % 2 else "failure", "version": 1, "error": str(n)}
        for n, sid in enumerate(ids)
    ]
    answer = await feedback(client, items)
    assert answer["unmodified"] == []
    assert answer["modified"] == [entry(i["stream_id"], i["status"]) for i in items]
    assert queue_worker.applied_batches == 1
    stored = {
        doc["_id"]: (doc["status"], doc["last_error"])
        async for doc in database.streams.find({}, {"status": 1, "last_error": 1})
    }
    assert stored == {i["stream_id"]: (i["status"], i["error"]) for i in items}
    rows = await database.stream_logs.find({"status": {"$in": ["done", "failure"]}}).to_list()
    assert sorted((r["stream_id"], r["status"], r["error"]) for r in rows) == sorted(
        (i["stream_id"], i["status"], i["error"]) for i in items
    )


async def test_feedback_bad_body_is_refused(client: Client, database: Database) -> None:
    """Validated by the gateway: refused at once, no worker needed, nothing written."""
    [stream_id] = await claimed_streams(client, 1)
    before = await snapshot(database)
    good = {"stream_id": stream_id, "status": "done", "version": 1}
    bad: list[Any] = [
        {},
        {"streams": [good | {"status": "pause"}]},
        {"streams": [good | {"version": 0}]},
        {"streams": [good | {"stream_id": "nope"}]},
        {"streams": [good | {"extra": 1}]},
        {"streams": [good | {"video_info": {"width": 1}}]},
        {"streams": [good | {"video_info": VIDEO_INFO | {"progress": 2}}]},
        {"streams": [{k: v for k, v in good.items() if k != "version"}]},
    ]
    for version in (1, 2):
        for body in bad:
            resp = await client.post(f"/{version}/streams/processing/feedback", json=body)
            answer = await resp.json()
            assert (resp.status, answer.get("error_code")) == (400, 12022), (body, answer)
    assert await snapshot(database) == before


@pytest.mark.slow
async def test_feedback_without_worker_times_out_and_expires(
    settings: Settings, database: Database
) -> None:
    quick = settings.model_copy(update={"feedback_timeout": 1.0})
    async with TestClient(TestServer(create_app(quick))) as client:
        [stream_id] = await claimed_streams(client, 1)
        before = await snapshot(database)
        started = time.monotonic()
        resp = await client.post(
            "/1/streams/processing/feedback",
            json={"streams": [{"stream_id": stream_id, "status": "done", "version": 1}]},
        )
        elapsed = time.monotonic() - started
        answer = await resp.json()
        assert resp.status >= 500, answer
        assert set(answer) >= {"error_code", "desc", "detail"}
        assert answer["error_code"] == 3 and resp.status == 504, answer
        assert 0.9 <= elapsed < 4.0, elapsed

    # a worker that starts later must not apply the batch the gateway gave up on
    worker = FeedbackWorker(quick)
    await worker.start()
    try:
        await asyncio.sleep(2.0)  # nothing to poll for: we wait for something not to happen
        assert worker.applied_batches == 0
    finally:
        await worker.stop(timeout=5)
    assert await snapshot(database) == before
    assert await queue_depth(settings, QueueNames(settings.queue_prefix).feedback) == 0


async def test_feedback_after_a_new_claim(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """A stream claimed again after a restart takes feedback for its new claim only."""
    [stream_id] = await claimed_streams(client, 1)
    answer = await feedback(client, [{"stream_id": stream_id, "status": "failure", "version": 1}])
    assert answer["modified"] == [entry(stream_id, "failure")]
    await patch_status(client, stream_id, "pending")
    [again] = await claim(client, {"stream_ids": [stream_id]}, 1)
    assert (again["status"], again["version"]) == ("in_progress", 1)
    answer = await feedback(client, [{"stream_id": stream_id, "status": "done", "version": 1}])
    assert answer == {"modified": [entry(stream_id, "done")], "unmodified": []}
    assert await log_rows(database, stream_id) == [
        ("pending", 1),
        ("in_progress", 1),
        ("failure", 1),
        ("pending", 1),
        ("in_progress", 1),
        ("done", 1),
    ]
