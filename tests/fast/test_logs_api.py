"""Stream logs: GET and DELETE /{1,2}/streams/logs over rows written by real stream changes."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import shared.services.logs
from shared.core.types import Doc
from shared.domain.documents import format_time
from shared.services.logs import TARGETS, LogsQuery, StreamLogService
from shared.store.mongo import Database

Client = TestClient[Any, Any]
ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
OTHER_ACCOUNT = "8950722f-3fd4-4223-b48f-03f95f0e8dfb"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def stream_body(account_id: str, status: str = "pending") -> dict[str, Any]:
    return {
        "account_id": account_id,
        "data": {"type": "tcp", "reference": "rtsp://camera/1"},
        "event_handler": {
            "bestshot_handler": {"handler_id": "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"},
            "authorization": {"account_id": account_id},
        },
        "status": status,
    }


@dataclass
class Scenario:
    a: str  # pending, pause, pending, then PUT: restart + pending (version 2)
    b: str  # other account, created paused
    c: str  # pending, then deleted


async def create_stream(client: Client, account_id: str, status: str = "pending") -> str:
    resp = await client.post("/1/streams", json=stream_body(account_id, status))
    assert resp.status == 201, await resp.text()
    stream_id: str = (await resp.json())["stream_id"]
    return stream_id


async def patch_status(client: Client, stream_id: str, status: str) -> None:
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": status})
    assert resp.status == 204, await resp.text()


async def make_scenario(client: Client) -> Scenario:
    a = await create_stream(client, ACCOUNT)
    b = await create_stream(client, OTHER_ACCOUNT, "pause")
    c = await create_stream(client, ACCOUNT)
    await patch_status(client, a, "pause")
    await patch_status(client, a, "pending")
    resp = await client.put(f"/1/streams/{a}", json=stream_body(ACCOUNT))
    assert resp.status == 200, await resp.text()
    resp = await client.delete(f"/1/streams/{c}")
    assert resp.status == 204, await resp.text()
    return Scenario(a=a, b=b, c=c)


async def get_logs(client: Client, version: int = 1, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get(f"/{version}/streams/logs", params=params)
    assert resp.status == 200, await resp.text()
    logs: list[dict[str, Any]] = (await resp.json())["logs"]
    return logs


async def stored_rows(database: Database) -> list[Doc]:
    """Every row, newest first, by the listing's order (log_time desc, _id desc)."""
    rows = await database.stream_logs.find({}).to_list()
    return sorted(rows, key=lambda row: (row["log_time"], row["_id"]), reverse=True)


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    log_time = row["log_time"]
    if isinstance(log_time, datetime):
        log_time = format_time(log_time)
    return (row["stream_id"], row["status"], row["version"], log_time)


async def test_logs_newest_first_with_every_field(client: Client, database: Database) -> None:
    s = await make_scenario(client)
    rows = await stored_rows(database)
    assert len(rows) == 8
    for version in (1, 2):
        logs = await get_logs(client, version, page_size=100)
        assert [key(log) for log in logs] == [key(row) for row in rows]
        for log in logs:
            assert list(log) == list(TARGETS)
            assert TIME.fullmatch(log["log_time"])
    logs = await get_logs(client, page_size=100)
    assert logs[0]["stream_id"] == s.c
    assert logs[0]["status"] == "deleted"
    assert [(log["status"], log["version"]) for log in logs if log["stream_id"] == s.a][:2] in (
        [("pending", 2), ("restart", 2)],
        [("restart", 2), ("pending", 2)],  # one change: both rows share their log time
    )
    assert [log["status"] for log in logs if log["stream_id"] == s.a][2:] == [
        "pending",
        "pause",
        "pending",
    ]
    assert logs[-1]["error"] is None
    assert logs[-1]["video_info"] is None
    assert logs[-1]["preview"] is None


async def test_logs_default_page_is_ten(client: Client) -> None:
    await make_scenario(client)
    await make_scenario(client)
    assert len(await get_logs(client)) == 10


async def test_logs_filters(client: Client, database: Database) -> None:
    s = await make_scenario(client)
    rows = await stored_rows(database)

    def expected(keep: Any) -> list[tuple[Any, ...]]:
        return [key(row) for row in rows if keep(row)]

    logs = await get_logs(client, stream_ids=s.a, page_size=100)
    assert [key(log) for log in logs] == expected(lambda r: r["stream_id"] == s.a)
    both = expected(lambda r: r["stream_id"] in (s.a, s.c))
    logs = await get_logs(client, stream_ids=f"{s.a},{s.c}", page_size=100)
    assert [key(log) for log in logs] == both
    resp = await client.get(
        "/2/streams/logs", params=[("stream_ids", s.a), ("stream_ids", s.c), ("page_size", "100")]
    )
    assert [key(log) for log in (await resp.json())["logs"]] == both

    logs = await get_logs(client, statuses="restart,deleted")
    assert [key(log) for log in logs] == expected(lambda r: r["status"] in ("restart", "deleted"))
    logs = await get_logs(client, account_id=OTHER_ACCOUNT)
    assert [(log["stream_id"], log["status"]) for log in logs] == [(s.b, "pause")]
    logs = await get_logs(client, account_id=ACCOUNT, statuses="pending", page_size=100)
    assert [key(log) for log in logs] == expected(
        lambda r: r["account_id"] == ACCOUNT and r["status"] == "pending"
    )

    middle = rows[4]["log_time"]
    bound = middle.isoformat()
    logs = await get_logs(client, log_time__gte=bound, page_size=100)
    assert [key(log) for log in logs] == expected(lambda r: r["log_time"] >= middle)
    logs = await get_logs(client, log_time__lt=bound, page_size=100)
    assert [key(log) for log in logs] == expected(lambda r: r["log_time"] < middle)
    assert len(logs) >= 1
    moscow = timezone(timedelta(hours=3))
    oldest = rows[-1]["log_time"]
    logs = await get_logs(
        client,
        log_time__gte=oldest.astimezone(moscow).isoformat(timespec="milliseconds"),
        log_time__lt=middle.astimezone(moscow).isoformat(timespec="milliseconds"),
    )
    assert [key(log) for log in logs] == expected(lambda r: oldest <= r["log_time"] < middle)
    assert await get_logs(client, stream_ids=str(uuid.uuid4())) == []


async def test_logs_targets(client: Client) -> None:
    s = await make_scenario(client)
    logs = await get_logs(client, targets="status,stream_id", page_size=100)
    assert len(logs) == 8
    assert all(list(log) == ["stream_id", "status"] for log in logs)
    resp = await client.get(
        "/2/streams/logs",
        params=[("targets", "log_time"), ("targets", "version"), ("stream_ids", s.b)],
    )
    logs = (await resp.json())["logs"]
    assert len(logs) == 1
    assert list(logs[0]) == ["log_time", "version"]
    assert TIME.fullmatch(logs[0]["log_time"])
    assert logs[0]["version"] == 1
    logs = await get_logs(client, targets="preview,preview", stream_ids=s.b)
    assert logs == [{"preview": None}]


async def test_logs_pagination(client: Client) -> None:
    await make_scenario(client)
    everything = await get_logs(client, page_size=100)
    pages = [await get_logs(client, page=page, page_size=3) for page in (1, 2, 3, 4)]
    assert [len(page) for page in pages] == [3, 3, 2, 0]
    assert [log for page in pages for log in page] == everything


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("statuses", "bogus"),
        ("statuses", "pending,not_found"),
        ("targets", "account_id"),
        ("targets", ","),
        ("stream_ids", "not-a-uuid"),
        ("account_id", "ACCOUNT"),
        ("log_time__gte", "2024-01-01T00:00:00"),
        ("log_time__lt", "yesterday"),
        ("log_time__gte", "1700000000"),
        ("log_time__lt", "1700000000"),
        ("page", "0"),
        ("page_size", "0"),
        ("page_size", "1001"),
    ],
)
async def test_logs_bad_parameters(client: Client, name: str, value: str) -> None:
    for version in (1, 2):
        resp = await client.get(f"/{version}/streams/logs", params={name: value})
        assert resp.status == 400
        body = await resp.json()
        assert body["error_code"] == 12012
        assert body["detail"] == f"Bad query parameters '{name}'"


async def test_logs_page_twice_is_refused(client: Client) -> None:
    resp = await client.get("/1/streams/logs", params=[("page", "1"), ("page", "2")])
    assert (await resp.json())["error_code"] == 12012


async def test_delete_keeps_each_streams_newest_log(client: Client, database: Database) -> None:
    s = await make_scenario(client)
    before = await get_logs(client, page_size=100)
    newest = {
        sid: next(key(log) for log in before if log["stream_id"] == sid) for sid in (s.a, s.b, s.c)
    }
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    resp = await client.delete("/1/streams/logs", params={"log_time__lt": future})
    assert resp.status == 200
    assert await resp.json() == {"deleted_count": 5}
    after = await get_logs(client, page_size=100)
    assert sorted(key(log) for log in after) == sorted(newest.values())
    assert newest[s.c][1] == "deleted"
    assert newest[s.b][1] == "pause"
    resp = await client.delete("/2/streams/logs", params={"log_time__lt": future})
    assert await resp.json() == {"deleted_count": 0}
    assert await database.stream_logs.count_documents({}) == 3


async def test_delete_between_rows(client: Client, database: Database) -> None:
    await make_scenario(client)
    rows = await stored_rows(database)
    bound = rows[3]["log_time"]
    newest: dict[str, Any] = {}
    for row in rows:  # newest first
        newest.setdefault(row["stream_id"], row["_id"])
    doomed = {r["_id"] for r in rows if r["log_time"] < bound and r["_id"] not in newest.values()}
    assert doomed
    resp = await client.delete("/1/streams/logs", params={"log_time__lt": bound.isoformat()})
    assert await resp.json() == {"deleted_count": len(doomed)}
    left = {row["_id"] for row in await stored_rows(database)}
    assert left == {row["_id"] for row in rows} - doomed


async def test_delete_before_everything_deletes_nothing(client: Client) -> None:
    await make_scenario(client)
    resp = await client.delete("/1/streams/logs", params={"log_time__lt": "2001-01-01T00:00:00Z"})
    assert await resp.json() == {"deleted_count": 0}
    assert len(await get_logs(client, page_size=100)) == 8


@pytest.mark.parametrize("version", [1, 2])
async def test_delete_without_bound_keeps_each_streams_newest(client: Client, version: int) -> None:
    """The reference does not mark ``log_time__lt`` required: absent, the bound is now."""
    made = await make_scenario(client)
    newest = {}
    for row in await get_logs(client, page_size=100):
        newest.setdefault(row["stream_id"], row)
    resp = await client.delete(f"/{version}/streams/logs")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"deleted_count": 8 - 3}
    left = await get_logs(client, page_size=100)
    assert sorted(map(key, left)) == sorted(map(key, newest.values()))
    assert {row["stream_id"] for row in left} == {made.a, made.b, made.c}
    resp = await client.delete(f"/{version}/streams/logs")
    assert await resp.json() == {"deleted_count": 0}


@pytest.mark.parametrize("bound", ["2024-01-01T00:00:00", "1700000000"])
async def test_delete_needs_an_aware_rfc3339_bound(
    client: Client, database: Database, bound: str
) -> None:
    """An RFC 3339 date-time, as on every list: no naive time, no unix timestamp."""
    before = await database.stream_logs.count_documents({})
    resp = await client.delete("/1/streams/logs", params={"log_time__lt": bound})
    assert resp.status == 400
    body = await resp.json()
    assert body["error_code"] == 12012
    assert body["detail"] == "Bad query parameters 'log_time__lt'"
    assert await database.stream_logs.count_documents({}) == before


async def test_delete_in_batches_breaks_ties_like_the_listing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of one change share a log time: the kept row is the one listed first."""
    monkeypatch.setattr(shared.services.logs, "DELETE_BATCH", 2)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    rows: list[Doc] = []
    streams = [str(uuid.uuid4()) for _ in range(5)]
    for n, stream_id in enumerate(streams):
        for minute in range(n + 1):
            for status in ("restart", "pending"):
                rows.append(
                    {
                        "_id": str(uuid.uuid4()),
                        "stream_id": stream_id,
                        "account_id": ACCOUNT,
                        "log_time": start + timedelta(minutes=minute),
                        "status": status,
                        "error": None,
                        "video_info": None,
                        "version": 1,
                        "preview": None,
                    }
                )
    await database.stream_logs.insert_many(rows)
    service = StreamLogService(database)
    listed = await service.list(LogsQuery(page_size=1000, targets=["stream_id", "log_time"]))
    assert len(listed) == len(rows) == 30
    ordered = sorted(rows, key=lambda r: (r["log_time"], r["_id"]), reverse=True)
    keep: dict[str, str] = {}
    for row in ordered:
        keep.setdefault(row["stream_id"], row["_id"])

    deleted = await service.delete_older_than(start + timedelta(hours=1))
    assert deleted == 25
    left = {row["_id"] async for row in database.stream_logs.find({}, {"_id": 1})}
    assert left == set(keep.values())
    assert await service.delete_older_than(start + timedelta(hours=1)) == 0
