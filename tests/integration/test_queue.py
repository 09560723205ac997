"""The processing queue over HTTP: peek (GET) and claim (POST), v1 and v2.

Real RabbitMQ (queue tokens) and real MongoDB (the compare-and-set that decides a claim).
Stream logs are read from MongoDB directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.mongo import Database
from tests.integration.factories import (
    MISSING_ID,
    STREAM_KEYS_V1,
    STREAM_KEYS_V2,
    Client,
    body_for,
    claim,
    claim_ids,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    log_rows,
    patch_status,
    queue_depth,
    snapshot,
    v1_body,
)

VERSIONS = pytest.mark.parametrize("version", [1, 2])
Json = dict[str, Any]


# --- helpers ------------------------------------------------------------------------------


async def peek(client: Client, params: Any, version: int = 1) -> list[Json]:
    resp = await client.get(f"/{version}/streams/processing/queue", params=params)
    answer = await resp.json()
    assert resp.status == 200, answer
    assert set(answer) == {"streams"}
    streams: list[Json] = answer["streams"]
    return streams


async def peek_ids(client: Client, params: Any, version: int = 1) -> list[str]:
    return [stream["stream_id"] for stream in await peek(client, params, version)]


async def attach(client: Client, group_id: str, stream_ids: list[str]) -> None:
    resp = await client.patch(
        "/1/linker", json={"action": "attach", "group_id": group_id, "stream_ids": stream_ids}
    )
    assert resp.status == 204, await resp.text()


async def streams_depth(settings: Settings) -> int:
    return await queue_depth(settings, QueueNames(settings.queue_prefix).streams)


async def create_many(client: Client, count: int, **fields: Any) -> list[str]:
    """``count`` pending streams named ``s0``, ``s1``...; created one after the other, so
    their queue order is their creation order."""
    return [await create_stream(client, v1_body(name=f"s{i}", **fields)) for i in range(count)]


# --- peek ---------------------------------------------------------------------------------


@VERSIONS
async def test_peek_lists_pending_streams_in_queue_order(
    client: Client, database: Database, settings: Settings, version: int
) -> None:
    first, second, third = [
        await create_stream(client, body_for(version, name=f"s{i}"), version) for i in range(3)
    ]
    paused = await create_stream(client, body_for(version, name="p", status="pause"), version)
    # back in the queue: the first stream is now the most recently queued
    await patch_status(client, first, "pause")
    await patch_status(client, first, "pending")
    before = await snapshot(database)
    depth = await streams_depth(settings)

    streams = await peek(client, {"limit": 10}, version)
    assert [s["stream_id"] for s in streams] == [second, third, first]
    assert {s["status"] for s in streams} == {"pending"}
    assert set(streams[0]) == (STREAM_KEYS_V1 if version == 1 else STREAM_KEYS_V2)
    assert streams[0]["name"] == "s1"
    assert paused not in [s["stream_id"] for s in streams]
    assert await peek_ids(client, {"limit": 2}, version) == [second, third]
    assert await peek_ids(client, {"limit": 1}, version) == [second]

    # a peek changes nothing: no status, no log row, no token consumed
    assert await snapshot(database) == before
    assert await streams_depth(settings) == depth == 4  # 3 pending creations + 1 re-queue


async def test_peek_filters(client: Client, database: Database) -> None:
    g1 = await create_group(client, "g1")
    g2 = await create_group(client, "g2")
    a = await create_stream(client, v1_body(name="a", group_name="g1"))
    b = await create_stream(client, v1_body(name="b", group_name="g2"))
    c = await create_stream(client, v1_body(name="c"))
    d = await create_stream(client, v1_body(name="a"))  # same name as `a`, no group
    await attach(client, g2, [d])
    e = await create_stream(client, v1_body(name="e", group_name="g1", status="pause"))
    before = await snapshot(database)

    async def ids(*pairs: tuple[str, str]) -> list[str]:
        return await peek_ids(client, [("limit", "100"), *pairs])

    assert await ids() == [a, b, c, d]
    # stream_ids: comma-separated and repeated
    assert await ids(("stream_ids", f"{c},{a}")) == [a, c]
    assert await ids(("stream_ids", c), ("stream_ids", a), ("stream_ids", e)) == [a, c]
    assert await ids(("stream_ids", MISSING_ID)) == []
    # names
    assert await ids(("names", "a")) == [a, d]
    assert await ids(("names", "b,c")) == [b, c]
    assert await ids(("names", "b"), ("names", "e")) == [b]
    # groups, by id and by name
    assert await ids(("group_ids", g1)) == [a]
    assert await ids(("group_ids", g2)) == [b, d]
    assert await ids(("group_ids", f"{g1},{g2}")) == [a, b, d]
    assert await ids(("group_names", "g1"), ("group_names", "g2")) == [a, b, d]
    assert await ids(("group_names", "g2")) == [b, d]
    assert await ids(("group_names", "nope")) == []
    # AND across kinds
    assert await ids(("names", "a"), ("group_names", "g2")) == [d]
    assert await ids(("names", "a"), ("group_ids", g1)) == [a]
    assert await ids(("stream_ids", f"{a},{b}"), ("group_names", "g2")) == [b]
    assert await ids(("stream_ids", a), ("names", "b")) == []
    # limit applies after the filters
    assert await peek_ids(client, [("limit", "1"), ("group_names", "g2")]) == [b]
    assert await snapshot(database) == before


BAD_PEEKS: list[Json] = [
    {},
    {"limit": "0"},
    {"limit": "-1"},
    {"limit": "x"},
    {"limit": "2147483648"},
    {"limit": ""},
]


async def test_peek_bad_query(client: Client, database: Database) -> None:
    await create_stream(client, v1_body())
    before = await snapshot(database)
    for version in (1, 2):
        for params in BAD_PEEKS:
            resp = await client.get(f"/{version}/streams/processing/queue", params=params)
            body = await expect_error(resp, 400, 12012)
            assert "limit" in body["detail"], (params, body)
        resp = await client.get(
            f"/{version}/streams/processing/queue",
            params={"limit": "1", "stream_ids": "not-a-uuid"},
        )
        body = await expect_error(resp, 400, 12012)
        assert "stream_ids" in body["detail"]
    assert await snapshot(database) == before


# --- claim --------------------------------------------------------------------------------


@VERSIONS
async def test_claim_takes_oldest_first_once(
    client: Client, database: Database, settings: Settings, version: int
) -> None:
    ids = [await create_stream(client, body_for(version, name=f"s{i}"), version) for i in range(3)]
    paused = await create_stream(client, body_for(version, status="pause"), version)

    first = await claim(client, {}, 2, version)
    assert [s["stream_id"] for s in first] == ids[:2]
    for stream in first:
        assert set(stream) == (STREAM_KEYS_V1 if version == 1 else STREAM_KEYS_V2)
        assert (stream["status"], stream["version"]) == ("in_progress", 1)
        assert stream["name"] == f"s{ids.index(stream['stream_id'])}"
        got = await get_stream(client, stream["stream_id"], version)
        assert got["status"] == "in_progress"
        assert got["data"] == stream["data"]
    assert await peek_ids(client, {"limit": 10}, version) == [ids[2]]

    assert await claim_ids(client, {}, 5, version) == [ids[2]]
    assert await claim(client, {}, 5, version) == []
    for stream_id in ids:
        assert await log_rows(database, stream_id) == [("pending", 1), ("in_progress", 1)]
    assert (await get_stream(client, paused, version))["status"] == "pause"
    assert await log_rows(database, paused) == [("pause", 1)]
    assert await streams_depth(settings) == 0


async def test_claim_log_row_carries_the_version(client: Client, database: Database) -> None:
    stream_id = await create_stream(client, v1_body(name="cam"))
    resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(name="cam2"))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["version"] == 2
    [stream] = await claim(client, {}, 10)
    assert (stream["stream_id"], stream["version"], stream["name"]) == (stream_id, 2, "cam2")
    rows = await database.stream_logs.find(
        {"stream_id": stream_id, "status": "in_progress"}
    ).to_list()
    assert [(row["version"], row["account_id"]) for row in rows] == [(2, stream["account_id"])]
    claimed = await database.streams.find_one({"_id": stream_id})
    assert claimed is not None
    assert claimed["claim"]["claimed_at"] == rows[0]["log_time"]


async def test_claim_by_group(client: Client, database: Database, settings: Settings) -> None:
    g1 = await create_group(client, "g1")
    g2 = await create_group(client, "g2")
    a = await create_stream(client, v1_body(name="a", group_name="g1"))
    b = await create_stream(client, v1_body(name="b", group_name="g2"))
    c = await create_stream(client, v1_body(name="c"))
    late = await create_stream(client, v1_body(name="late"))  # joins g1 while pending
    await attach(client, g1, [late])
    paused = await create_stream(client, v1_body(name="p", status="pause"))
    await attach(client, g1, [paused])  # not pending: not claimable through g1

    assert await claim_ids(client, {"group_names": ["g1"]}, 10) == [a, late]
    assert await claim(client, {"group_names": ["g1"]}, 10) == []
    assert await claim(client, {"group_ids": [g1]}, 10) == []
    assert await claim_ids(client, {"group_ids": [g2]}, 10) == [b]
    assert await claim(client, {"group_names": ["nope"]}, 10) == []
    # the all-streams queue still holds the tokens of the group claims: they are stale
    assert await claim_ids(client, {}, 10) == [c]
    assert await claim(client, {}, 10) == []
    for stream_id in (a, b, c, late):
        rows = await log_rows(database, stream_id)
        assert rows == [("pending", 1), ("in_progress", 1)], (stream_id, rows)
    assert (await get_stream(client, paused))["status"] == "pause"
    assert await streams_depth(settings) == 0
    names = QueueNames(settings.queue_prefix)
    assert await queue_depth(settings, names.group(g1)) == 0
    assert await queue_depth(settings, names.group(g2)) == 0


async def test_claim_by_group_and_name_takes_the_intersection(client: Client) -> None:
    g1 = await create_group(client, "g1")
    a = await create_stream(client, v1_body(name="a", group_name="g1"))
    await create_stream(client, v1_body(name="b", group_name="g1"))
    await create_stream(client, v1_body(name="a"))
    [stream] = await claim(client, {"names": ["a"], "group_ids": [g1]}, 10)
    assert (stream["stream_id"], stream["groups"]) == (a, ["g1"])


async def test_claim_by_stream_ids_and_names(
    client: Client, database: Database, settings: Settings
) -> None:
    a, b, c, d = await create_many(client, 4)
    paused = await create_stream(client, v1_body(name="s1", status="pause"))

    assert await claim_ids(client, {"stream_ids": [c, paused, MISSING_ID]}, 10) == [c]
    assert await claim(client, {"stream_ids": [c]}, 10) == []
    assert await claim_ids(client, {"names": ["s1", "s3"]}, 10) == [b, d]
    assert await claim(client, {"names": ["s1", "s3"]}, 10) == []
    assert await claim_ids(client, {"stream_ids": [a, b, d]}, 10) == [a]
    for stream_id in (a, b, c, d):
        assert await log_rows(database, stream_id) == [("pending", 1), ("in_progress", 1)]
    assert (await get_stream(client, paused))["status"] == "pause"
    # their queue tokens are stale now: a claim from the broker consumes them, returns nothing
    assert await streams_depth(settings) == 4
    assert await claim(client, {}, 10) == []
    assert await streams_depth(settings) == 0


async def test_claim_limit_bounds_the_answer(client: Client) -> None:
    ids = await create_many(client, 5)
    assert await claim_ids(client, {}, 1) == ids[:1]
    assert await claim_ids(client, {"names": ["s1", "s2", "s3"]}, 2) == ids[1:3]
    assert await claim_ids(client, {"stream_ids": ids}, 1) == ids[3:4]
    assert await claim_ids(client, {}, 3) == ids[4:]


BAD_CLAIMS: list[Any] = [
    {"filters": {}},
    {"limit": 1},
    {"filters": {}, "limit": 0},
    {"filters": {}, "limit": -3},
    {"filters": {}, "limit": 2**31},
    {"filters": {}, "limit": "1"},
    {"filters": {}, "limit": 1.5},
    {"filters": {}, "limit": True},
    {"filters": [], "limit": 1},
    {"filters": {"stream_ids": ["not-a-uuid"]}, "limit": 1},
    {"filters": {"stream_ids": "a"}, "limit": 1},
    {"filters": {"group_names": ["bad name!"]}, "limit": 1},
    {"filters": {"statuses": ["pending"]}, "limit": 1},
    {"filters": {}, "limit": 1, "account_id": MISSING_ID},
    [],
]


async def test_claim_bad_body(client: Client, database: Database, settings: Settings) -> None:
    await create_stream(client, v1_body())
    before = await snapshot(database)
    for version in (1, 2):
        for body in BAD_CLAIMS:
            resp = await client.post(f"/{version}/streams/processing/queue", json=body)
            answer = await resp.json()
            assert (resp.status, answer.get("error_code")) == (400, 12022), (body, answer)
        resp = await client.post(
            f"/{version}/streams/processing/queue",
            data=b"{limit: 1",
            headers={"Content-Type": "application/json"},
        )
        answer = await resp.json()
        assert resp.status == 400 and answer["error_code"] in (12022, 12027), answer
    assert await snapshot(database) == before
    assert await streams_depth(settings) == 1


async def test_claim_respects_max_active_streams(settings: Settings, database: Database) -> None:
    capped = settings.model_copy(update={"max_active_streams": 2})
    async with TestClient(TestServer(create_app(capped))) as client:
        ids = await create_many(client, 5)
        assert await claim_ids(client, {}, 5) == ids[:2]
        assert await claim(client, {}, 5) == []  # full: an empty answer, not an error
        assert await claim(client, {"stream_ids": ids}, 5) == []
        await patch_status(client, ids[0], "pause")  # one slot free again
        assert await claim_ids(client, {}, 5) == ids[2:3]
        assert await claim(client, {"names": ["s3"]}, 1) == []
        assert await database.streams.count_documents({"status": "in_progress"}) == 2
        assert await peek_ids(client, {"limit": 10}) == ids[3:]


async def test_max_active_streams_holds_under_concurrent_claims(
    settings: Settings, database: Database
) -> None:
    """Two gateways (two apps, two ClaimServices) over one database, four claims at once
    on each: together they never exceed the cap."""
    capped = settings.model_copy(update={"max_active_streams": 3})
    async with (
        TestClient(TestServer(create_app(capped))) as one,
        TestClient(TestServer(create_app(capped))) as two,
    ):
        ids = await create_many(one, 10)
        answers = await asyncio.gather(
            *(claim_ids(gw, {}, 2) for gw in (one, two, one, two, one, two, one, two))
        )
        taken = [stream_id for answer in answers for stream_id in answer]
        assert sorted(taken) == sorted(ids[:3])  # the three oldest, once each
        assert await database.streams.count_documents({"status": "in_progress"}) == 3
        assert await database.stream_logs.count_documents({"status": "in_progress"}) == 3
        # the lock is free again: a slot that frees up is taken at once, by either gateway
        await patch_status(one, taken[0], "pause")
        assert await claim_ids(two, {"stream_ids": ids}, 5) == ids[3:4]
        assert await claim(one, {}, 5) == []


# --- stale tokens -------------------------------------------------------------------------


async def test_stale_tokens_are_skipped_and_consumed(
    client: Client, database: Database, settings: Settings
) -> None:
    paused, replaced, deleted, fresh, resumed = await create_many(client, 5)
    await patch_status(client, paused, "pause")
    resp = await client.put(f"/1/streams/{replaced}", json=v1_body(name="replaced"))
    assert resp.status == 200 and (await resp.json())["version"] == 2
    resp = await client.delete(f"/1/streams/{deleted}")
    assert resp.status == 204
    await patch_status(client, resumed, "pause")
    await patch_status(client, resumed, "pending")  # a stale token and a fresh one
    assert await streams_depth(settings) == 7

    claimed = await claim(client, {}, 100)
    assert [(s["stream_id"], s["version"]) for s in claimed] == [
        (fresh, 1),
        (replaced, 2),
        (resumed, 1),
    ]
    assert await streams_depth(settings) == 0  # every token, stale or not, was consumed
    assert await claim(client, {}, 100) == []

    assert (await get_stream(client, paused))["status"] == "pause"
    assert await log_rows(database, paused) == [("pending", 1), ("pause", 1)]
    assert await database.streams.find_one({"_id": deleted}) is None
    assert await log_rows(database, deleted) == [("pending", 1), ("deleted", 1)]
    assert (await log_rows(database, replaced))[-1] == ("in_progress", 2)
    assert [r for r in await log_rows(database, replaced) if r[0] == "in_progress"] == [
        ("in_progress", 2)
    ]
    assert (await log_rows(database, resumed)).count(("in_progress", 1)) == 1


async def test_stale_group_tokens_are_skipped(
    client: Client, database: Database, settings: Settings
) -> None:
    group_id = await create_group(client, "g")
    paused, replaced, deleted, kept = [
        await create_stream(client, v1_body(name=f"s{i}", group_name="g")) for i in range(4)
    ]
    await patch_status(client, paused, "pause")
    resp = await client.put(f"/1/streams/{replaced}", json=v1_body(group_name="g"))
    assert resp.status == 200 and (await resp.json())["version"] == 2
    assert (await client.delete(f"/1/streams/{deleted}")).status == 204
    group_queue = QueueNames(settings.queue_prefix).group(group_id)
    assert await queue_depth(settings, group_queue) == 5

    claimed = await claim(client, {"group_ids": [group_id]}, 10)
    assert [(s["stream_id"], s["version"]) for s in claimed] == [(kept, 1), (replaced, 2)]
    assert await queue_depth(settings, group_queue) == 0
    assert await claim(client, {"group_names": ["g"]}, 10) == []
    assert (await get_stream(client, paused))["status"] == "pause"


async def test_concurrent_claims_in_one_gateway_never_share(
    client: Client, database: Database
) -> None:
    ids = await create_many(client, 12)
    answers = await asyncio.gather(*(claim_ids(client, {}, 3) for _ in range(6)))
    taken = [stream_id for answer in answers for stream_id in answer]
    assert sorted(taken) == sorted(ids)
    assert await database.stream_logs.count_documents({"status": "in_progress"}) == 12
