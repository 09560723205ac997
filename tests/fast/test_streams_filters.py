"""Stream lists and counts (v1 and v2): every filter, account scoping, pagination, order
and bad query parameters; and the bulk delete, whose body is a filter (ids OR names)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Client,
    body_for,
    count,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    list_ids,
    seed_example,
    set_fields,
    snapshot,
    v1_body,
    v2_body,
)

VERSIONS = pytest.mark.parametrize("version", [1, 2])


async def make_streams(client: Client, database: Database) -> dict[str, Any]:
    """Five streams, oldest first, each created at a distinct millisecond.

    ====  ============  ========  ===========  ==========  =======
    key   account       name      reference    status      group
    ====  ============  ========  ===========  ==========  =======
    a     ACCOUNT       alpha     rtsp://a     pending     g1
    b     ACCOUNT       beta      rtsp://b     pause       -
    c     ACCOUNT (v2)  gamma     rtsp://a     pending     g2
    d     OTHER         alpha     rtsp://a     pause       g1 (OTHER's own)
    e     ACCOUNT       delta     - (udp)      done        -
    ====  ============  ========  ===========  ==========  =======
    """
    await create_group(client, "g1")
    await create_group(client, "g2")
    await create_group(client, "g1", OTHER_ACCOUNT)
    bodies = {
        "a": (1, v1_body(name="alpha", reference="rtsp://a", group_name="g1")),
        "b": (1, v1_body(name="beta", reference="rtsp://b", status="pause")),
        "c": (2, v2_body(name="gamma", reference="rtsp://a", group_name="g2")),
        "d": (
            1,
            v1_body(
                name="alpha",
                reference="rtsp://a",
                status="pause",
                account_id=OTHER_ACCOUNT,
                group_name="g1",
            ),
        ),
        "e": (1, v1_body(name="delta", source="udp", reference=None)),
    }
    ids: dict[str, Any] = {}
    times: dict[str, str] = {}
    for key, (version, body) in bodies.items():
        ids[key] = await create_stream(client, body, version)
        times[key] = (await get_stream(client, ids[key]))["create_time"]
        await asyncio.sleep(0.003)
    await set_fields(database, ids["e"], status="done")
    assert len(set(times.values())) == 5
    return {"ids": ids, "times": times}


@VERSIONS
async def test_every_filter_of_list_and_count(
    client: Client, database: Database, version: int
) -> None:
    made = await make_streams(client, database)
    ids, times = made["ids"], made["times"]
    a, b, c, d, e = (ids[k] for k in "abcde")
    plus3 = (
        datetime.fromisoformat(times["c"].replace("Z", "+00:00"))
        .astimezone(timezone(timedelta(hours=3)))
        .isoformat(timespec="milliseconds")
    )
    cases: list[tuple[dict[str, Any] | list[tuple[str, str]], list[str]]] = [
        ({}, [a, b, c, d, e]),
        ({"account_id": ACCOUNT}, [a, b, c, e]),
        ({"account_id": OTHER_ACCOUNT}, [d]),
        ({"account_id": "11111111-1111-4111-8111-111111111111"}, []),
        ({"stream_ids": f"{a},{c}"}, [a, c]),
        ([("stream_ids", c), ("stream_ids", a)], [a, c]),
        ([("stream_ids", f"{e},{b}"), ("stream_ids", d)], [b, d, e]),
        ({"stream_ids": "11111111-1111-4111-8111-111111111111"}, []),
        ({"names": "alpha,delta"}, [a, d, e]),
        ([("names", "beta"), ("names", "gamma")], [b, c]),
        ({"names": "alpha", "account_id": ACCOUNT}, [a]),
        ({"reference": "rtsp://a"}, [a, c, d]),
        ({"reference": "rtsp://"}, []),
        ({"statuses": "pause,done"}, [b, d, e]),
        ([("statuses", "pending"), ("statuses", "done")], [a, c, e]),
        ({"statuses": "in_progress,failure,cancel"}, []),
        # the logs' statuses: no stream is ever in them, so they match nothing here
        ({"statuses": "restart,handler_lost,deleted"}, []),
        ({"statuses": "pending,deleted,pending"}, [a, c]),
        ({"group_name": "g1"}, [a, d]),
        ({"group_name": "g1", "account_id": ACCOUNT}, [a]),
        ({"group_name": "g2"}, [c]),
        ({"group_name": "g3"}, []),
        ({"create_time__gte": times["c"]}, [c, d, e]),
        ({"create_time__lt": times["c"]}, [a, b]),
        ({"create_time__gte": times["b"], "create_time__lt": times["d"]}, [b, c]),
        ({"create_time__gte": plus3}, [c, d, e]),
        ({"create_time__lt": "2000-01-01T00:00:00Z"}, []),
        ({"account_id": ACCOUNT, "reference": "rtsp://a", "statuses": "pending"}, [a, c]),
        ({"names": "alpha", "statuses": "pending", "group_name": "g1"}, [a]),
        ({"unknown_parameter": "1"}, [a, b, c, d, e]),
    ]
    for params, expected in cases:
        assert await list_ids(client, version, params=params) == expected, params
        assert await count(client, version, params=params) == len(expected), params


@VERSIONS
async def test_stream_id_range_and_order(client: Client, database: Database, version: int) -> None:
    """v1's ``order`` and stream id range; v2 honours them too (it ignored them before)."""
    made = await make_streams(client, database)
    created = list(made["ids"].values())
    by_id = sorted(created)
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({"order": "asc"}, created),
        ({"order": "desc"}, created[::-1]),
        ({"stream_id__gte": by_id[0]}, by_id),
        ({"stream_id__gte": by_id[2]}, by_id[2:]),
        ({"stream_id__lt": by_id[2]}, by_id[:2]),
        ({"stream_id__gte": by_id[1], "stream_id__lt": by_id[4]}, by_id[1:4]),
        ({"stream_id__gte": by_id[1], "order": "desc"}, by_id[1:][::-1]),
        ({"stream_id__gte": by_id[1], "stream_ids": f"{by_id[0]},{by_id[3]}"}, [by_id[3]]),
        ({"order": "desc", "page_size": "2", "page": "2"}, created[::-1][2:4]),
    ]
    for params, expected in cases:
        assert await list_ids(client, version, params=params) == expected, params
        if "order" not in params and "page" not in params:
            assert await count(client, version, params=params) == len(expected), params


@VERSIONS
async def test_pagination_in_creation_order(client: Client, version: int) -> None:
    created = [await create_stream(client, body_for(version), version) for _ in range(23)]
    assert await list_ids(client, version) == created[:10]
    pages = [await list_ids(client, version, params={"page": p}) for p in (1, 2, 3, 4)]
    assert pages == [created[:10], created[10:20], created[20:], []]
    assert await list_ids(client, version, params={"page_size": 7, "page": 4}) == created[21:]
    assert await list_ids(client, version, params={"page_size": 1, "page": 23}) == created[22:]
    assert await list_ids(client, version, params={"page_size": 1000}) == created
    assert await list_ids(client, version, params={"page_size": 5, "page": 1000}) == []
    huge = {"page_size": 1000, "page": 10**17}  # past the 64-bit skip of MongoDB
    assert await list_ids(client, version, params=huge) == []
    assert await list_ids(client, version, params={"page": 10**30}) == []
    assert await count(client, version, params={"page_size": 5}) == 23


BAD_QUERIES: list[tuple[str, Any]] = [
    ("account_id", "not-a-uuid"),
    ("account_id", ACCOUNT.upper()),
    ("stream_ids", "not-a-uuid"),
    ("stream_ids", f"{ACCOUNT},nope"),
    ("names", "n" * 129),
    ("reference", "r" * 513),
    ("statuses", "bogus"),
    ("statuses", "pending,not_found"),
    ("create_time__gte", "yesterday"),
    ("create_time__gte", "2021-09-21T11:11:41"),
    ("create_time__lt", "2021-13-21T11:11:41Z"),
    ("create_time__gte", "1632222701"),
    ("create_time__gte", "0"),
    ("create_time__lt", "2021-09-21T11:11Z"),
    ("group_name", "no spaces"),
    ("group_name", "g" * 129),
]
PAGE_QUERIES: list[tuple[str, Any]] = [
    ("page", "0"),
    ("page", "-1"),
    ("page", "two"),
    ("page_size", "0"),
    ("page_size", "1001"),
    ("page_size", "1.5"),
]


@VERSIONS
async def test_bad_query_parameters_are_12012(
    client: Client, database: Database, version: int
) -> None:
    await create_stream(client, body_for(version), version)
    before = await snapshot(database)
    list_only = [*PAGE_QUERIES, ("order", "sideways")]
    ranges = [("stream_id__gte", "nope"), ("stream_id__lt", "1")]
    for name, value in BAD_QUERIES + ranges + list_only:
        resp = await client.get(f"/{version}/streams", params={name: value})
        await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")
        if (name, value) not in list_only:
            resp = await client.get(f"/{version}/streams/count", params={name: value})
            await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")
    twice = [("account_id", ACCOUNT), ("account_id", ACCOUNT)]
    await expect_error(await client.get(f"/{version}/streams", params=twice), 400, 12012)
    resp = await client.get(f"/{version}/streams", params=[("page", "1"), ("page", "2")])
    await expect_error(resp, 400, 12012, "Bad query parameters 'page'")
    assert await snapshot(database) == before


@VERSIONS
async def test_delete_many_by_ids_or_names(
    client: Client, database: Database, version: int
) -> None:
    ids = [await create_stream(client, body_for(version, name=f"s{i}"), version) for i in range(5)]
    other = await create_stream(
        client, body_for(version, name="s1", account_id=OTHER_ACCOUNT), version
    )
    body = {"stream_ids": [ids[0], "11111111-1111-4111-8111-111111111111"], "names": ["s1", "s3"]}
    resp = await client.delete(f"/{version}/streams", params={"account_id": ACCOUNT}, json=body)
    assert (resp.status, await resp.read()) == (204, b"")
    assert set(await list_ids(client, version)) == {ids[2], ids[4], other}
    deleted = await database.stream_logs.find({"status": "deleted"}).to_list()
    assert sorted(row["stream_id"] for row in deleted) == sorted([ids[0], ids[1], ids[3]])
    before = await snapshot(database)
    for bad in ({"stream_ids": ["nope"]}, {"names": ["n"] * 1001}, {"ids": [ids[2]]}):
        resp = await client.delete(f"/{version}/streams", json=bad)
        await expect_error(resp, 400, 12022)
    assert await snapshot(database) == before
    resp = await client.delete(f"/{version}/streams", json={"names": ["s1"], "stream_ids": None})
    assert resp.status == 204
    assert await list_ids(client, version) == [ids[2], ids[4]]
    resp = await client.delete(f"/{version}/streams", json={})
    assert resp.status == 204
    assert await count(client, version) == 2


async def test_delete_many_seed_example(client: Client) -> None:
    example = seed_example("v1_delete_streams")
    kept = await create_stream(client, v1_body(name="kept"))
    gone = await create_stream(client, v1_body(name=example["names"][0]))
    resp = await client.delete("/1/streams", json=example)
    assert resp.status == 204
    assert await list_ids(client) == [kept]
    assert gone not in await list_ids(client)


@pytest.mark.parametrize(
    "path", ["/1/streams/count", "/2/streams", "/1/streams/logs", "/2/streams/logs"]
)
async def test_a_time_before_year_one_in_utc_is_a_bad_query(client: Client, path: str) -> None:
    """0001-01-01T00:32:01+09:31 is valid RFC 3339 but has no UTC form: 12012, not a 500."""
    name = "log_time__lt" if path.endswith("logs") else "create_time__lt"
    resp = await client.get(path, params={name: "0001-01-01T00:32:01+09:31"})
    body = await resp.json()
    assert (resp.status, body["error_code"]) == (400, 12012), body
    assert body["detail"] == f"Bad query parameters '{name}'"


@pytest.mark.parametrize("value", ["1700000000", "1700000000.5", "0"])
async def test_a_bare_number_is_not_a_time_on_any_list(client: Client, value: str) -> None:
    """The reference's time filters are ``string <date-time>`` "in RFC 3339 format": a unix
    timestamp is the same 12012 on the stream lists and counts and on the logs."""
    await create_stream(client, v1_body())
    queries = [
        ("GET", f"/{version}/streams{tail}", name)
        for version in (1, 2)
        for tail in ("", "/count")
        for name in ("create_time__gte", "create_time__lt")
    ] + [
        (method, f"/{version}/streams/logs", name)
        for version in (1, 2)
        for method, name in (
            ("GET", "log_time__gte"),
            ("GET", "log_time__lt"),
            ("DELETE", "log_time__lt"),
        )
    ]
    for method, path, name in queries:
        resp = await client.request(method, path, params={name: value})
        await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")
