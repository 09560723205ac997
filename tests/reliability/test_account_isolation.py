"""Account isolation: through account B nothing of account A can be read, listed, counted,
changed, deleted, linked or previewed, and A's objects stay exactly as they were.

Every route that takes ``account_id`` (in its query or its body) has an attack below; the
routes are read from the operation table, so a new one fails
:func:`test_every_account_route_is_attacked` until it gets one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import yaml

from gateway.api import Operation, all_operations
from gateway.app import APIS
from shared.store.mongo import Database
from tests.integration.factories import Json, create_group, create_stream, v1_body, v2_body
from tests.integration.sse import EventReader
from tests.reliability.conftest import Client

A = "aaaaaaaa-0000-4000-a000-00000000000a"
B = "bbbbbbbb-0000-4000-a000-00000000000b"
#: A's webhook target: loopback (allowed in these tests); nothing is ever delivered here
A_HOOK = "http://127.0.0.1:9/hook"
#: an id of nothing (tokens are of no account: the route refuses B's account before looking)
NO_SUCH_ID = "00000000-0000-4000-a000-000000000000"
A_ONLY_GROUP = "a-team"
SHARED_GROUP = "same-name"
UNREACHABLE = "http://127.0.0.1:1/frame"


ACCOUNT_OPERATIONS = [op for op in all_operations(APIS) if op.takes_account]


def route_key(op: Operation) -> str:
    """``GET /{v}/streams``: one attack serves both API versions."""
    return f"{op.method} " + re.sub(r"^/[12]/", "/{v}/", op.path)


@dataclass(frozen=True)
class World:
    """A's streams (one per API version) and groups, and B's, which B may use freely."""

    a_streams: dict[int, str]
    a_group: str
    a_shared_group: str
    b_streams: dict[int, str]
    b_group: str
    a_webhook: str

    @property
    def a_stream_ids(self) -> list[str]:
        return list(self.a_streams.values())


@pytest_asyncio.fixture(scope="module")
async def world(module_client: Client, module_database: Database) -> World:
    client = module_client
    a_group = await create_group(client, A_ONLY_GROUP, A)
    a_shared = await create_group(client, SHARED_GROUP, A)
    b_group = await create_group(client, SHARED_GROUP, B)
    a_streams = {
        1: await create_stream(client, v1_body(account_id=A, name="cam-a", group_name="a-team")),
        2: await create_stream(client, v2_body(account_id=A, name="cam-a2"), 2),
    }
    b_streams = {
        1: await create_stream(client, v1_body(account_id=B, name="cam-b"), 1),
        2: await create_stream(client, v2_body(account_id=B, name="cam-b2"), 2),
    }
    for stream_id in a_streams.values():
        await module_database.streams.update_one(
            {"_id": stream_id},
            {
                "$set": {
                    "preview": {"live": {"url": UNREACHABLE}, "last_frame": {"url": UNREACHABLE}}
                }
            },
        )
    for stream_id in (*a_streams.values(), *b_streams.values()):  # rows a delete could take
        for status in ("pause", "pending"):
            version = 1 if stream_id in (a_streams[1], b_streams[1]) else 2
            resp = await client.patch(f"/{version}/streams/{stream_id}", json={"status": status})
            assert resp.status == 204, await resp.text()
    resp = await client.patch(
        "/1/linker",
        params={"account_id": A},
        json={"action": "attach", "group_id": a_shared, "stream_ids": list(a_streams.values())},
    )
    assert resp.status == 204, await resp.text()
    a_webhook = await ok(
        client,
        "POST",
        "/1/webhooks",
        201,
        json={"account_id": A, "url": A_HOOK, "events": ["failure", "deleted"], "secret": "a" * 32},
    )
    return World(a_streams, a_group, a_shared, b_streams, b_group, a_webhook["webhook_id"])


async def ok(client: Client, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
    resp = await client.request(method, url, **kwargs)
    text = await resp.text()
    assert resp.status == status, (method, url, kwargs, text[:300])
    return await resp.json() if text else None


async def not_found(client: Client, method: str, url: str, code: int, **kwargs: Any) -> None:
    resp = await client.request(method, url, **kwargs)
    body = await resp.json()
    assert (resp.status, body.get("error_code")) == (404, code), (method, url, kwargs, body)


async def view_of_a(client: Client, database: Database, world: World) -> dict[str, Any]:
    """What A sees through the API, and A's documents as stored."""
    as_a = {"account_id": A}
    view: dict[str, Any] = {
        "streams": [
            await ok(client, "GET", f"/{v}/streams/{sid}", params=as_a)
            for v, sid in world.a_streams.items()
        ],
        "groups": await ok(client, "GET", "/1/groups", params=as_a),
        "streams_count": await ok(client, "GET", "/1/streams/count", params=as_a),
        "groups_count": await ok(client, "GET", "/1/groups/count", params=as_a),
        "logs": await ok(client, "GET", "/1/streams/logs", params={**as_a, "page_size": 1000}),
    }
    for name in ("streams", "groups", "stream_logs", "webhooks", "webhook_deliveries"):
        view[f"stored {name}"] = (
            await database.db[name].find({"account_id": A}).sort("_id", 1).to_list()
        )
    assert len(view["stored streams"]) == 2
    assert len(view["stored groups"]) == 2
    return view


Attack = Callable[[Client, World, int], Awaitable[None]]
ATTACKS: dict[str, Attack] = {}


def attack(*keys: str) -> Callable[[Attack], Attack]:
    def register(func: Attack) -> Attack:
        for key in keys:
            ATTACKS[key] = func
        return func

    return register


def as_b(**params: Any) -> dict[str, Any]:
    return {"account_id": B, **params}


# --- streams ----------------------------------------------------------------------------------


@attack("GET /")
async def console_page(client: Client, world: World, v: int) -> None:
    """The console page opens on B's account; it is the same static page for every account
    and carries none of A's objects (the page reads them through the API, as B)."""
    resp = await client.get("/", params=as_b(), headers={"Accept": "text/html"})
    assert resp.status == 200
    page = await resp.text()
    assert not any(sid in page for sid in [*world.a_stream_ids, world.a_group])


@attack("GET /{v}/streams/{stream_id}")
async def read_stream(client: Client, world: World, v: int) -> None:
    for sid in world.a_stream_ids:
        await not_found(client, "GET", f"/{v}/streams/{sid}", 39001, params=as_b())
    await ok(client, "GET", f"/{v}/streams/{world.a_streams[v]}", params={"account_id": A})


@attack("GET /{v}/streams")
async def list_streams(client: Client, world: World, v: int) -> None:
    ids = ",".join(world.a_stream_ids)
    for params in (
        as_b(page_size=1000),
        as_b(stream_ids=ids),
        as_b(names="cam-a,cam-a2"),
        as_b(group_name=A_ONLY_GROUP),
        as_b(group_name=SHARED_GROUP, page_size=1000),
    ):
        listed = await ok(client, "GET", f"/{v}/streams", params=params)
        assert not {s["stream_id"] for s in listed["streams"]} & set(ids.split(",")), params
        assert {s["account_id"] for s in listed["streams"]} <= {B}
    control = await ok(
        client, "GET", f"/{v}/streams", params={"account_id": A, "stream_ids": world.a_streams[v]}
    )
    assert [s["stream_id"] for s in control["streams"]] == [world.a_streams[v]]


@attack("GET /{v}/streams/count")
async def count_streams(client: Client, world: World, v: int) -> None:
    ids = ",".join(world.a_stream_ids)
    for params in (as_b(stream_ids=ids), as_b(names="cam-a,cam-a2"), as_b(group_name=A_ONLY_GROUP)):
        assert await ok(client, "GET", f"/{v}/streams/count", params=params) == {
            "streams_count": 0
        }, params
    control = await ok(
        client, "GET", f"/{v}/streams/count", params={"account_id": A, "stream_ids": ids}
    )
    assert control == {"streams_count": 2}


@attack("PATCH /{v}/streams/{stream_id}")
async def patch_stream(client: Client, world: World, v: int) -> None:
    for body in ({"description": "by B"}, {"status": "pause"}, {"status": "cancel"}):
        for sid in world.a_stream_ids:
            await not_found(client, "PATCH", f"/{v}/streams/{sid}", 39001, params=as_b(), json=body)


@attack("PUT /{v}/streams/{stream_id}")
async def put_stream(client: Client, world: World, v: int) -> None:
    body = v1_body(account_id=B, name="taken") if v == 1 else v2_body(account_id=B, name="taken")
    for sid in world.a_stream_ids:
        await not_found(client, "PUT", f"/{v}/streams/{sid}", 39001, json=body)


@attack("DELETE /{v}/streams/{stream_id}")
async def delete_stream(client: Client, world: World, v: int) -> None:
    for sid in world.a_stream_ids:
        await not_found(client, "DELETE", f"/{v}/streams/{sid}", 39001, params=as_b())


@attack("DELETE /{v}/streams")
async def delete_streams(client: Client, world: World, v: int) -> None:
    """Unknown ids and names are ignored: 204, and A's streams are still there."""
    body = {"stream_ids": world.a_stream_ids, "names": ["cam-a", "cam-a2"]}
    await ok(client, "DELETE", f"/{v}/streams", 204, params=as_b(), json=body)


@attack("POST /{v}/streams")
async def create_stream_in_a_group(client: Client, world: World, v: int) -> None:
    """B cannot put a stream into A's group by naming it (B has no group of that name)."""
    body = (
        v1_body(account_id=B, group_name=A_ONLY_GROUP)
        if v == 1
        else v2_body(account_id=B, group_name=A_ONLY_GROUP)
    )
    resp = await client.post(f"/{v}/streams", json=body)
    answer = await resp.json()
    assert (resp.status, answer.get("error_code")) == (404, 39007), answer


# --- previews (v1 only: v2 previews take no account) -------------------------------------------


@attack(
    "GET /{v}/streams/{stream_id}/preview/handler/last_frame",
    "GET /{v}/streams/{stream_id}/preview/last_frame",
    "GET /{v}/streams/{stream_id}/preview/handler/live",
    "GET /{v}/streams/{stream_id}/preview/live",
)
async def preview(client: Client, world: World, v: int) -> None:
    for middle in ("preview/handler", "preview"):
        for kind in ("last_frame", "live"):
            for sid in world.a_stream_ids:
                url = f"/{v}/streams/{sid}/{middle}/{kind}"
                await not_found(client, "GET", url, 39001, params=as_b())
            # the control: A gets as far as the (unreachable) agent
            url = f"/{v}/streams/{world.a_streams[v]}/{middle}/{kind}"
            resp = await client.get(url, params={"account_id": A})
            assert (await resp.json())["error_code"] == 39010


# --- logs -------------------------------------------------------------------------------------


@attack("GET /{v}/streams/logs")
async def list_logs(client: Client, world: World, v: int) -> None:
    ids = ",".join(world.a_stream_ids)
    for params in (as_b(page_size=1000), as_b(stream_ids=ids, page_size=1000)):
        logs = (await ok(client, "GET", f"/{v}/streams/logs", params=params))["logs"]
        assert not {log["stream_id"] for log in logs} & set(world.a_stream_ids), params
    control = await ok(
        client, "GET", f"/{v}/streams/logs", params={"account_id": A, "stream_ids": ids}
    )
    assert {log["stream_id"] for log in control["logs"]} == set(world.a_stream_ids)


# --- live events ------------------------------------------------------------------------------


@attack("GET /{v}/streams/events")
async def stream_events(client: Client, world: World, v: int) -> None:
    """B's subscriptions, even naming A's streams, get none of A's events: A's stream changes
    (and changes back) first, then B's own, and B's first event is B's own."""
    url = f"/{v}/streams/events"
    b_stream = world.b_streams[v]
    subscriptions = [
        (await client.get(url, params=as_b()), b_stream),
        (
            await client.get(
                url, params=as_b(stream_ids=",".join([*world.a_stream_ids, b_stream]))
            ),
            b_stream,
        ),
        (await client.get(url, params={"account_id": A}), world.a_streams[v]),  # the control
    ]
    readers = [(EventReader(resp), first) for resp, first in subscriptions]
    try:
        for reader, _ in readers:
            assert (await reader.next()).event == "ready"
        a_stream = world.a_streams[v]
        original = (await ok(client, "GET", f"/1/streams/{a_stream}"))["description"]
        for description in ("changed by A", original):
            await ok(
                client, "PATCH", f"/1/streams/{a_stream}", 204, json={"description": description}
            )
        await ok(client, "PATCH", f"/1/streams/{b_stream}", 204, json={"description": "by B"})
        for reader, first in readers:
            event = await reader.next()
            assert (event.event, event.json["stream_id"]) == ("changed", first)
    finally:
        for resp, _ in subscriptions:
            resp.close()


@attack("DELETE /{v}/streams/logs")
async def delete_logs(client: Client, world: World, v: int) -> None:
    """Honoured as an extension: B's old rows go, A's stay (each stream keeps its newest)."""
    bound = {"log_time__lt": datetime.now(UTC).isoformat()}
    of_b = as_b(stream_ids=",".join(world.b_streams.values()), page_size=1000)
    before = await ok(client, "GET", f"/{v}/streams/logs", params=of_b)
    deleted = await ok(client, "DELETE", f"/{v}/streams/logs", params=as_b(**bound))
    b_logs = await ok(client, "GET", f"/{v}/streams/logs", params=of_b)
    assert len(b_logs["logs"]) == len(world.b_streams)  # only B's newest rows are left
    assert deleted["deleted_count"] == len(before["logs"]) - len(b_logs["logs"])


# --- webhooks ---------------------------------------------------------------------------------


@attack("POST /{v}/webhooks")
async def make_webhook(client: Client, world: World, v: int) -> None:
    """B's webhook is B's: listed for B only, never told of A's streams."""
    made = await ok(
        client,
        "POST",
        f"/{v}/webhooks",
        201,
        json={"account_id": B, "url": A_HOOK, "events": ["failure"], "secret": "b" * 32},
    )
    mine = await ok(client, "GET", f"/{v}/webhooks/{made['webhook_id']}", params=as_b())
    assert mine["account_id"] == B
    await ok(client, "DELETE", f"/{v}/webhooks/{made['webhook_id']}", 204, params=as_b())


@attack("GET /{v}/webhooks")
async def list_webhooks(client: Client, world: World, v: int) -> None:
    listed = await ok(client, "GET", f"/{v}/webhooks", params=as_b())
    assert world.a_webhook not in {w["webhook_id"] for w in listed["webhooks"]}
    assert {w["account_id"] for w in listed["webhooks"]} <= {B}
    control = await ok(client, "GET", f"/{v}/webhooks", params={"account_id": A})
    assert [w["webhook_id"] for w in control["webhooks"]] == [world.a_webhook]


@attack(
    "GET /{v}/webhooks/{webhook_id}",
    "DELETE /{v}/webhooks/{webhook_id}",
    "POST /{v}/webhooks/{webhook_id}/test",
    "GET /{v}/webhooks/{webhook_id}/deliveries",
)
async def reach_webhook(client: Client, world: World, v: int) -> None:
    hook = f"/{v}/webhooks/{world.a_webhook}"
    for method, url in (
        ("GET", hook),
        ("GET", f"{hook}/deliveries"),
        ("POST", f"{hook}/test"),
        ("DELETE", hook),
    ):
        await not_found(client, method, url, 12044, params=as_b())


# --- bulk changes, export and import -----------------------------------------------------------


@attack("PATCH /{v}/streams")
async def bulk_change(client: Client, world: World, v: int) -> None:
    """B's filter naming A's streams matches none of them."""
    answer = await ok(
        client,
        "PATCH",
        f"/{v}/streams",
        params=as_b(stream_ids=",".join(world.a_stream_ids)),
        json={"status": "cancel"},
    )
    assert answer == {"changed": 0, "skipped": []}


@attack("GET /{v}/streams/export")
async def export(client: Client, world: World, v: int) -> None:
    resp = await client.get(f"/{v}/streams/export", params=as_b())
    assert resp.status == 200, await resp.text()
    lines = [json.loads(line) for line in (await resp.text()).splitlines() if line]
    exported = {line["stream_id"] for line in lines}
    assert not exported & set(world.a_stream_ids)
    listed = await ok(client, "GET", f"/{v}/streams", params=as_b(page_size=1000))
    assert exported == {s["stream_id"] for s in listed["streams"]}


@attack("POST /{v}/streams/import")
async def import_into_b(client: Client, world: World, v: int) -> None:
    """A's own export, imported by B, makes B's streams (new ids); A's stay as they were."""
    resp = await client.get(f"/{v}/streams/export", params={"account_id": A})
    text = await resp.text()
    assert resp.status == 200 and text, text
    answer = await ok(
        client,
        "POST",
        f"/{v}/streams/import",
        params=as_b(),
        data=text.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer["created"] + answer["existing"] >= 1, answer
    listed = await ok(client, "GET", f"/{v}/streams", params=as_b(page_size=1000))
    made = {s["stream_id"] for s in listed["streams"]} - set(world.b_streams.values())
    assert made and not made & set(world.a_stream_ids)
    # B's copies and the groups they brought go again: the other attacks count B's objects
    await ok(client, "DELETE", f"/{v}/streams", 204, params=as_b(), json={"stream_ids": list(made)})
    for group in await ok(client, "GET", f"/{v}/groups", params=as_b(page_size=1000)):
        if group["group_id"] != world.b_group:
            await ok(client, "DELETE", f"/{v}/groups/{group['group_id']}", 204, params=as_b())


# --- API tokens and the audit trail ------------------------------------------------------------


@attack("POST /{v}/tokens")
async def make_token(client: Client, world: World, v: int) -> None:
    """A token made for B is B's: it names B, and reaches nothing of A's (tests/integration/
    test_auth.py uses such tokens against A)."""
    made = await ok(client, "POST", f"/{v}/tokens", 201, json={"role": "viewer", "account_id": B})
    assert made["account_id"] == B and made["token"].startswith("lst_")


@attack("GET /{v}/audit")
async def read_audit(client: Client, world: World, v: int) -> None:
    """B's audit rows only (authentication is off here: none are written at all)."""
    rows = await ok(client, "GET", f"/{v}/audit", params=as_b(page_size=1000))
    assert {row["account_id"] for row in rows["entries"]} <= {B}


# --- groups and the linker --------------------------------------------------------------------


@attack("GET /{v}/groups/{group_id}")
async def read_group(client: Client, world: World, v: int) -> None:
    for gid in (world.a_group, world.a_shared_group):
        await not_found(client, "GET", f"/{v}/groups/{gid}", 39008, params=as_b())
    await ok(client, "GET", f"/{v}/groups/{world.a_group}", params={"account_id": A})


@attack("GET /{v}/groups")
async def list_groups(client: Client, world: World, v: int) -> None:
    a_groups = {world.a_group, world.a_shared_group}
    for params in (
        as_b(page_size=1000),
        as_b(group_ids=",".join(a_groups)),
        as_b(group_names=f"{A_ONLY_GROUP},{SHARED_GROUP}"),
    ):
        groups = await ok(client, "GET", f"/{v}/groups", params=params)
        assert not {g["group_id"] for g in groups} & a_groups, params
        assert {g["account_id"] for g in groups} <= {B}
    control = await ok(client, "GET", f"/{v}/groups", params={"account_id": A})
    assert {g["group_id"] for g in control} == a_groups


@attack("GET /{v}/groups/count")
async def count_groups(client: Client, world: World, v: int) -> None:
    for params in (
        as_b(group_ids=f"{world.a_group},{world.a_shared_group}"),
        as_b(group_names=A_ONLY_GROUP),
    ):
        assert await ok(client, "GET", f"/{v}/groups/count", params=params) == {
            "groups_count": 0
        }, params
    assert await ok(client, "GET", f"/{v}/groups/count", params={"account_id": A}) == {
        "groups_count": 2
    }


@attack("PATCH /{v}/groups/{group_id}")
async def patch_group(client: Client, world: World, v: int) -> None:
    for gid in (world.a_group, world.a_shared_group):
        await not_found(
            client,
            "PATCH",
            f"/{v}/groups/{gid}",
            39008,
            params=as_b(),
            json={"description": "by B"},
        )


@attack("DELETE /{v}/groups/{group_id}")
async def delete_group(client: Client, world: World, v: int) -> None:
    for gid in (world.a_group, world.a_shared_group):
        await not_found(client, "DELETE", f"/{v}/groups/{gid}", 39008, params=as_b())


@attack("POST /{v}/groups")
async def create_group_of_the_same_name(client: Client, world: World, v: int) -> None:
    """Group names are unique per account: B's group of A's name is B's own (and goes)."""
    created = await ok(
        client, "POST", f"/{v}/groups", 201, json={"account_id": B, "group_name": A_ONLY_GROUP}
    )
    assert created["group_id"] != world.a_group
    await ok(client, "DELETE", f"/{v}/groups/{created['group_id']}", 204, params=as_b())


@attack("PATCH /{v}/linker")
async def link(client: Client, world: World, v: int) -> None:
    def body(action: str, group_id: str, stream_ids: list[str]) -> Json:
        return {"action": action, "group_id": group_id, "stream_ids": stream_ids}

    url = f"/{v}/linker"
    b_ids = list(world.b_streams.values())
    for action in ("attach", "detach"):
        # B's streams into (or out of) A's group, through B
        await not_found(
            client, "PATCH", url, 39008, params=as_b(), json=body(action, world.a_group, b_ids)
        )
        # A's streams into (or out of) B's group, through B
        await not_found(
            client,
            "PATCH",
            url,
            39001,
            params=as_b(),
            json=body(action, world.b_group, world.a_stream_ids),
        )
        # A's streams out of A's group, through B
        await not_found(
            client,
            "PATCH",
            url,
            39008,
            params=as_b(),
            json=body(action, world.a_shared_group, world.a_stream_ids),
        )
        # without an account: a group takes only streams of its own account
        await not_found(client, "PATCH", url, 39001, json=body(action, world.a_group, b_ids))
        await not_found(
            client, "PATCH", url, 39001, json=body(action, world.b_group, world.a_stream_ids)
        )


# --- the tests --------------------------------------------------------------------------------


def test_every_account_route_is_attacked() -> None:
    assert {route_key(op) for op in ACCOUNT_OPERATIONS} == set(ATTACKS)


@pytest.mark.parametrize("op", ACCOUNT_OPERATIONS, ids=lambda op: op.route_label)
async def test_account_b_cannot_reach_account_a(
    module_client: Client, module_database: Database, world: World, op: Operation
) -> None:
    before = await view_of_a(module_client, module_database, world)
    version = int(op.path.split("/")[1] or 1)  # "/" (the console) has no API version
    await ATTACKS[route_key(op)](module_client, world, version)
    assert await view_of_a(module_client, module_database, world) == before


async def served_operations(client: Client) -> list[tuple[str, str, Json]]:
    resp = await client.get("/docs/spec", headers={"Accept": "application/x-yaml"})
    assert resp.status == 200
    spec = yaml.safe_load(await resp.text())
    return [
        (method.upper(), path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def fill_path(path: str, world: World) -> str:
    version = 1 if path.startswith("/1/") else 2
    return path.format(
        stream_id=world.a_streams[version],
        group_id=world.a_group,
        page="index.html",
        name="index.html",
        token_id=NO_SUCH_ID,
    )


async def test_every_served_operation_with_a_second_account(
    module_client: Client, module_database: Database, world: World
) -> None:
    """Every operation of the served spec, as account B: one that takes an account is
    attacked above; every other one refuses B's ``account_id`` with 12012. A's streams,
    groups and logs stay exactly as they were."""
    before = await view_of_a(module_client, module_database, world)
    served = await served_operations(module_client)
    scoped = {
        f"{m} " + re.sub(r"^/[12]/", "/{v}/", p)
        for m, p, op in served
        if op["x-account-scope"] == "account_id"
    }
    assert scoped == set(ATTACKS)
    refused = [(m, p) for m, p, op in served if op["x-account-scope"] == "refused"]
    assert {"DELETE", "GET", "PATCH", "POST"} >= {m for m, _ in refused}
    assert ("GET", "/2/streams/{stream_id}/preview/handler/last_frame") in refused
    assert ("GET", "/1/streams/processing/queue") in refused
    for method, path in refused:
        url = fill_path(path, world)
        resp = await module_client.request(method, url, params=as_b(), json={})
        body = await resp.json()
        assert (resp.status, body.get("error_code"), body.get("detail")) == (
            400,
            12012,
            "Bad query parameters 'account_id'",
        ), (method, url, body)
    assert await view_of_a(module_client, module_database, world) == before
