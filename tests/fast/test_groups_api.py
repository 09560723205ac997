"""Groups (``/1/groups``, ``/2/groups``) and the linker (``PATCH /{1,2}/linker``) over HTTP."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    MISSING_ID,
    OTHER_ACCOUNT,
    Client,
    count,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    link,
    seed_example,
    snapshot,
    v1_body,
    v2_body,
)

VERSIONS = pytest.mark.parametrize("version", [1, 2])
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def list_groups(client: Client, params: Any = None, version: int = 1) -> list[str]:
    resp = await client.get(f"/{version}/groups", params=params or {})
    body = await resp.json()
    assert resp.status == 200, body
    assert isinstance(body, list)
    return [group["group_name"] for group in body]


async def count_groups(client: Client, params: Any = None) -> int:
    resp = await client.get("/1/groups/count", params=params or {})
    body = await resp.json()
    assert resp.status == 200, body
    assert set(body) == {"groups_count"}
    value: int = body["groups_count"]
    return value


async def groups_of(client: Client, stream_id: str) -> list[str]:
    groups: list[str] = (await get_stream(client, stream_id))["groups"]
    return groups


@VERSIONS
async def test_group_lifecycle(client: Client, version: int) -> None:
    prefix = f"/{version}/groups"
    example = seed_example("group_create")
    resp = await client.post(prefix, json=example)
    assert resp.status == 201
    created = await resp.json()
    assert set(created) == {"group_id", "group_name"}
    assert created["group_name"] == example["group_name"]
    group_id = created["group_id"]
    uuid.UUID(group_id)

    resp = await client.get(f"{prefix}/{group_id}")
    group = await resp.json()
    assert resp.status == 200
    assert RFC3339_MS.fullmatch(group.pop("create_time"))
    assert group == {"group_id": group_id, **example}
    assert (
        await client.get(f"{prefix}/{group_id}", params={"account_id": example["account_id"]})
    ).status == 200

    resp = await client.patch(f"{prefix}/{group_id}", json=seed_example("group_patch"))
    assert (resp.status, await resp.read()) == (204, b"")
    resp = await client.get(prefix)
    (listed,) = await resp.json()
    assert listed["description"] == "old stream group"
    assert listed["group_id"] == group_id
    assert await count_groups(client) == 1

    resp = await client.delete(f"{prefix}/{group_id}")
    assert (resp.status, await resp.read()) == (204, b"")
    detail = f"Group with id '{group_id}' not found"
    await expect_error(await client.get(f"{prefix}/{group_id}"), 404, 39008, detail)
    await expect_error(await client.delete(f"{prefix}/{group_id}"), 404, 39008, detail)
    assert await list_groups(client, version=version) == []
    assert await count_groups(client) == 0


async def test_group_list_filters_and_pages(client: Client) -> None:
    ids = {}
    for index in range(12):
        account = ACCOUNT if index % 3 else OTHER_ACCOUNT
        ids[f"g{index}"] = await create_group(client, f"g{index}", account)
    names = list(ids)
    mine = [n for i, n in enumerate(names) if i % 3]
    cases: list[tuple[Any, list[str]]] = [
        ({}, names[:10]),
        ({"page": 2}, names[10:]),
        ({"page": 3}, []),
        ({"page_size": 5, "page": 3}, names[10:]),
        ({"page_size": 1000}, names),
        ({"page_size": 1000, "page": 10**17}, []),
        ({"account_id": ACCOUNT, "page_size": 100}, mine),
        ({"account_id": OTHER_ACCOUNT}, ["g0", "g3", "g6", "g9"]),
        ({"group_ids": f"{ids['g5']},{ids['g1']}"}, ["g1", "g5"]),
        ([("group_ids", ids["g7"]), ("group_ids", ids["g2"])], ["g2", "g7"]),
        ({"group_ids": MISSING_ID}, []),
        ({"group_names": "g11,g0,nope"}, ["g0", "g11"]),
        ([("group_names", "g3"), ("group_names", "g4")], ["g3", "g4"]),
        ({"group_names": "g3,g4", "account_id": ACCOUNT}, ["g4"]),
        ({"group_names": "g3", "group_ids": ids["g4"]}, []),
    ]
    for params, expected in cases:
        assert await list_groups(client, params) == expected, params
        pairs = list(params.items()) if isinstance(params, dict) else params
        filters = [(k, v) for k, v in pairs if k not in ("page", "page_size")]
        everything = await list_groups(client, [*filters, ("page_size", 1000)])
        assert await count_groups(client, filters) == len(everything), params
    bad = [
        ("page", "0"),
        ("page_size", "0"),
        ("page_size", "1001"),
        ("account_id", "x"),
        ("group_ids", "g1"),
        ("group_names", "no spaces"),
    ]
    for name, value in bad:
        resp = await client.get("/1/groups", params={name: value})
        await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")
        if not name.startswith("page"):
            resp = await client.get("/1/groups/count", params={name: value})
            await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")


async def test_group_errors_write_nothing(client: Client, database: Database) -> None:
    group_id = await create_group(client, "cams")
    before = await snapshot(database)
    resp = await client.post("/1/groups", json={"account_id": ACCOUNT, "group_name": "cams"})
    await expect_error(resp, 409, 39006, "Group named 'cams' already exists")
    bodies: list[tuple[Any, str, str]] = [
        ({"account_id": ACCOUNT}, "", "'group_name' is a required property"),
        ({"account_id": ACCOUNT, "group_name": "a b"}, "group_name", "'a b' does not match"),
        ({"account_id": ACCOUNT, "group_name": ""}, "group_name", "'' does not match"),
        (
            {"account_id": ACCOUNT, "group_name": "g", "description": "d" * 257},
            "description",
            "'ddd",
        ),
        ({"account_id": ACCOUNT, "group_name": "g", "streams": []}, "", "Additional properties"),
    ]
    for body, path, message in bodies:
        error = await expect_error(await client.post("/1/groups", json=body), 400, 12022)
        assert error["detail"].startswith(
            f"Failed to validate input json. Path: '{path}', message: '{message}"
        ), error["detail"]
    url = f"/1/groups/{group_id}"
    await expect_error(await client.patch(url, json={}), 400, 12022)
    await expect_error(await client.patch(url, json={"description": 1}), 400, 12022)
    await expect_error(
        await client.patch(url, data=b"{", headers={"Content-Type": "application/json"}), 400, 12027
    )
    await expect_error(
        await client.patch(url, data=b"{}", headers={"Content-Type": "text/plain"}), 415, 12023
    )
    other = {"account_id": OTHER_ACCOUNT}
    for method in ("GET", "PATCH", "DELETE"):
        resp = await client.request(method, url, params=other, json={"description": "d"})
        await expect_error(resp, 404, 39008, f"Group with id '{group_id}' not found")
        resp = await client.request(method, f"/1/groups/{MISSING_ID}", json={"description": "d"})
        await expect_error(resp, 404, 39008)
        resp = await client.request(method, "/1/groups/cams", json={"description": "d"})
        await expect_error(resp, 404, 12030)
    assert await snapshot(database) == before
    assert await list_groups(client, {"account_id": OTHER_ACCOUNT}) == []
    await create_group(client, "cams", OTHER_ACCOUNT)  # the same name in another account
    assert await list_groups(client) == ["cams", "cams"]


async def test_concurrent_creates_of_one_name(client: Client, database: Database) -> None:
    for round_ in range(5):
        body = {"account_id": ACCOUNT, "group_name": f"race-{round_}"}
        answers = await asyncio.gather(*(client.post("/1/groups", json=body) for _ in range(2)))
        assert sorted(resp.status for resp in answers) == [201, 409]
        codes = [(await resp.json()).get("error_code") for resp in answers]
        assert sorted(codes, key=str) == sorted([None, 39006], key=str)
        assert await database.groups.count_documents({"group_name": f"race-{round_}"}) == 1


async def test_deleting_a_group_unlinks_its_streams(client: Client) -> None:
    keep = await create_group(client, "keep")
    gone = await create_group(client, "gone")
    first = await create_stream(client, v1_body(group_name="gone"))
    second = await create_stream(client, v2_body(group_name="keep"), 2)
    assert (await link(client, "attach", gone, [second])).status == 204
    assert await groups_of(client, second) == ["keep", "gone"]
    resp = await client.delete(f"/1/groups/{gone}", params={"account_id": ACCOUNT})
    assert resp.status == 204
    assert await groups_of(client, first) == []
    assert await groups_of(client, second) == ["keep"]
    assert await count(client, params={"group_name": "gone"}) == 0
    assert await count(client, params={"group_name": "keep"}) == 1
    assert await count(client) == 2
    assert (await client.get(f"/1/groups/{keep}")).status == 200
    resp = await client.post("/1/streams", json=v1_body(group_name="gone"))
    await expect_error(resp, 404, 39007, "Group named 'gone' not found")
    await create_group(client, "gone")  # the name is free again; old members stay out
    assert await groups_of(client, first) == []


# --- the linker ---------------------------------------------------------------------------


@VERSIONS
async def test_attach_and_detach(client: Client, version: int) -> None:
    example = seed_example("linker")
    first = await create_group(client, "first")
    second = await create_group(client, "second")
    streams = [await create_stream(client, v1_body()) for _ in range(3)]
    url = f"/{version}/linker"
    body = example | {"group_id": first, "stream_ids": [streams[1], *streams[:2]]}
    resp = await client.patch(url, json=body)
    assert (resp.status, await resp.read()) == (204, b"")
    assert (await client.patch(url, json=body)).status == 204  # again: nothing more
    assert [await groups_of(client, s) for s in streams] == [["first"], ["first"], []]
    body = {"action": "attach", "group_id": second, "stream_ids": streams}
    assert (await client.patch(url, params={"account_id": ACCOUNT}, json=body)).status == 204
    assert [await groups_of(client, s) for s in streams] == [
        ["first", "second"],
        ["first", "second"],
        ["second"],
    ]
    assert await count(client, params={"group_name": "first"}) == 2
    body = {"action": "detach", "group_id": first, "stream_ids": streams}  # one not a member
    assert (await client.patch(url, json=body)).status == 204
    assert (await client.patch(url, json=body)).status == 204
    assert [await groups_of(client, s) for s in streams] == [["second"]] * 3
    assert (await client.patch(url, json=body | {"stream_ids": []})).status == 204
    assert await count(client, params={"group_name": "first"}) == 0


async def test_linker_errors_apply_nothing(client: Client, database: Database) -> None:
    group_id = await create_group(client, "cams")
    theirs = await create_group(client, "cams", OTHER_ACCOUNT)
    a, b = [await create_stream(client, v1_body()) for _ in range(2)]
    foreign = await create_stream(client, v1_body(account_id=OTHER_ACCOUNT))
    assert (await link(client, "attach", group_id, [b])).status == 204
    before = await snapshot(database)
    for action in ("attach", "detach"):
        resp = await link(client, action, group_id, [a, MISSING_ID, b])
        await expect_error(resp, 404, 39001, f"Stream with id '{MISSING_ID}' not found")
        resp = await link(client, action, group_id, [a, foreign, b])
        await expect_error(resp, 404, 39001, f"Stream with id '{foreign}' not found")
        resp = await link(client, action, theirs, [foreign, a])
        await expect_error(resp, 404, 39001, f"Stream with id '{a}' not found")
        resp = await link(client, action, MISSING_ID, [a])
        await expect_error(resp, 404, 39008, f"Group with id '{MISSING_ID}' not found")
        resp = await link(client, action, theirs, [foreign], account_id=ACCOUNT)
        await expect_error(resp, 404, 39008, f"Group with id '{theirs}' not found")
        resp = await link(client, action, group_id, [a], account_id="nope")
        await expect_error(resp, 400, 12012, "Bad query parameters 'account_id'")
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"action": "toggle", "group_id": group_id, "stream_ids": [a]}, "action"),
        ({"action": "attach", "stream_ids": [a]}, ""),
        ({"action": "attach", "group_id": group_id, "stream_ids": ["x"]}, "stream_ids.0"),
        ({"action": "attach", "group_id": group_id, "stream_ids": a}, "stream_ids"),
        ({"action": "attach", "group_id": "cams", "stream_ids": [a]}, "group_id"),
        ({"action": "attach", "group_id": group_id, "stream_ids": [a], "x": 1}, ""),
    ]
    for body, path in bad_bodies:
        error = await expect_error(await client.patch("/1/linker", json=body), 400, 12022)
        assert error["detail"].startswith(f"Failed to validate input json. Path: '{path}',")
    assert await snapshot(database) == before
    assert [await groups_of(client, s) for s in (a, b)] == [[], ["cams"]]
