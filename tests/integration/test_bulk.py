"""Bulk status changes: ``PATCH /{1,2}/streams`` with the list filters and a status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from queue_worker.worker import FeedbackWorker
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    create_group,
    expect_error,
    snapshot,
    v1_body,
    v2_body,
)

Client = TestClient[Any, Any]


async def create_many(client: Client, count: int, version: int = 1, **fields: Any) -> list[str]:
    async def one(n: int) -> str:
        body = (v1_body if version == 1 else v2_body)(name=f"cam-{n}", **fields)
        resp = await client.post(f"/{version}/streams", json=body)
        answer = await resp.json()
        assert resp.status == 201, answer
        return str(answer["stream_id"])

    ids: list[str] = []
    for start in range(0, count, 100):
        ids += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 100))))
    return ids


async def claim(client: Client, limit: int = 10) -> list[str]:
    resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": limit})
    answer = await resp.json()
    assert resp.status == 200, answer
    return [s["stream_id"] for s in answer["streams"]]


@pytest.mark.slow
async def test_pausing_a_thousand_streams_by_group(client: Client, database: Database) -> None:
    """1,000 log rows, no token, and a claim running meanwhile never gets a paused stream."""
    await create_group(client, "site-a")
    ids = await create_many(client, 1000, group_name="site-a")
    others = await create_many(client, 5)  # not in the group: untouched
    rows_before = await database.stream_logs.count_documents({})

    claimed: list[str] = []
    pausing = True

    async def claim_meanwhile() -> None:
        while pausing:
            claimed.extend(await claim(client))
            await asyncio.sleep(0.01)

    claims = asyncio.create_task(claim_meanwhile())
    await asyncio.sleep(0.2)
    resp = await client.patch(
        "/1/streams",
        params={"group_name": "site-a", "account_id": ACCOUNT},
        json={"status": "pause"},
    )
    answer = await resp.json()
    pausing = False
    await claims
    assert resp.status == 200, answer
    assert answer == {"changed": 1000, "skipped": []}

    # every stream of the group is paused (the ones claimed before their turn too)
    assert await database.streams.count_documents({"_id": {"$in": ids}, "status": "pause"}) == 1000
    # exactly one pause row each, and no other row written by the pause
    pause_rows = await database.stream_logs.find({"status": "pause"}).to_list()
    assert sorted(r["stream_id"] for r in pause_rows) == sorted(ids)
    claim_rows = await database.stream_logs.count_documents({"status": "in_progress"})
    assert claim_rows == len(claimed)
    assert await database.stream_logs.count_documents({}) == rows_before + 1000 + len(claimed)
    # nothing published for them: the change that paused each carries no token
    async for doc in database.streams.find({"_id": {"$in": ids}}, {"outbox": 1}):
        assert [e["log"]["status"] for e in doc["outbox"]] == ["pause"]
        assert all("token" not in e for e in doc["outbox"])
    # and no claim hands out a paused stream afterwards (their old tokens are stale)
    after: list[str] = []
    for _ in range(20):
        after += await claim(client, limit=100)
    assert set(after) <= set(others), set(after) & set(ids)
    assert not set(claimed) & set(after)


async def test_skipped_streams_say_why(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    video = await create_many(client, 1, data={"type": "videofile", "reference": "/v.mp4"})
    [live] = await create_many(client, 1)
    [paused] = await create_many(client, 1, status="pause")
    [theirs] = await create_many(client, 1, account_id=OTHER_ACCOUNT)
    resp = await client.post(
        "/1/streams/processing/queue",
        json={"filters": {"stream_ids": [video[0], live]}, "limit": 2},
    )
    assert resp.status == 200
    resp = await client.patch(
        "/1/streams", params={"account_id": ACCOUNT}, json={"status": "pause"}
    )
    answer = await resp.json()
    assert resp.status == 200, answer
    assert answer["changed"] == 1
    assert sorted(answer["skipped"], key=lambda s: s["stream_id"]) == sorted(
        [
            {
                "stream_id": video[0],
                "status": "in_progress",
                "reason": "a video file in progress cannot be paused",
            },
            {"stream_id": paused, "status": "pause", "reason": "already in that status"},
        ],
        key=lambda s: s["stream_id"],
    )
    statuses = {d["_id"]: d["status"] async for d in database.streams.find({}, {"status": 1})}
    assert statuses == {video[0]: "in_progress", live: "pause", paused: "pause", theirs: "pending"}

    # back to pending by name, through v2: a new token, claimable again
    resp = await client.patch(
        "/2/streams", params={"names": "cam-0", "statuses": "pause"}, json={"status": "pending"}
    )
    answer = await resp.json()
    assert resp.status == 200, answer
    assert answer["changed"] == 2  # live and paused are both named cam-0, in pause
    got: list[str] = []
    for _ in range(20):
        got += await claim(client)
        if {live, paused} <= set(got):
            break
    assert sorted(set(got) - {theirs}) == sorted([live, paused])
    # a cancel of a finished stream is skipped too
    resp = await client.post(
        "/1/streams/processing/feedback",
        json={"streams": [{"stream_id": live, "status": "done", "version": 1}]},
    )
    assert resp.status == 200
    resp = await client.patch("/1/streams", params={"stream_ids": live}, json={"status": "cancel"})
    answer = await resp.json()
    assert answer == {
        "changed": 0,
        "skipped": [
            {"stream_id": live, "status": "done", "reason": "a finished stream cannot be cancelled"}
        ],
    }


async def test_bad_bulk_requests_write_nothing(client: Client, database: Database) -> None:
    await create_many(client, 3)
    before = await snapshot(database)
    resp = await client.patch("/1/streams", json={"status": "done"})
    await expect_error(resp, 400, 39002)
    resp = await client.patch("/1/streams", json={"status": "pause", "extra": 1})
    await expect_error(resp, 400, 12022)
    resp = await client.patch(
        "/1/streams", params={"statuses": "sleeping"}, json={"status": "pause"}
    )
    await expect_error(resp, 400, 12012)
    resp = await client.patch("/1/streams", params={"account_id": "nope"}, json={"status": "pause"})
    await expect_error(resp, 400, 12012)
    assert await snapshot(database) == before
