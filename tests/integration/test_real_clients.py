"""Bodies real LUNA Streams clients send, accepted unchanged (issue 13, item 8).

A public Kotlin/Spring client creates streams with an ``event_handler`` that has no
``authorization`` (and ``origin: ""``, ``frame_store: ""``); FaceStream's manual links a
stream to a group at creation by ``group_name`` or ``group_id``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    HANDLER_ID,
    MISSING_ID,
    OTHER_ACCOUNT,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    snapshot,
    v1_body,
    v2_body,
)

Client = TestClient[Any, Any]
VERSIONS = pytest.mark.parametrize("version", [1, 2])

KOTLIN_EVENT_HANDLER = {
    "origin": "",
    "api_version": 6,
    "bestshot_handler": {"handler_id": HANDLER_ID},
    "frame_store": "",
}


def kotlin_body() -> dict[str, Any]:
    return {
        "account_id": ACCOUNT,
        "name": "cam-7",
        "description": "",
        "data": {"type": "tcp", "reference": "rtsp://192.0.2.7:554/main"},
        "event_handler": dict(KOTLIN_EVENT_HANDLER),
        "autorestart": {"restart": 1, "attempt_count": 10, "delay": 60},
    }


async def test_v1_event_handler_without_authorization(client: Client) -> None:
    stream_id = await create_stream(client, kotlin_body())
    stream = await get_stream(client, stream_id)
    assert stream["event_handler"] == {
        **KOTLIN_EVENT_HANDLER,
        "detection_handler": None,
        "authorization": {"account_id": ACCOUNT},
    }
    # seen through v2 as well, and a PUT without it keeps the same default
    v2 = await get_stream(client, stream_id, 2)
    assert v2["data"]["analytics"][0]["event_handler"]["authorization"] == {"account_id": ACCOUNT}
    body = {**kotlin_body(), "event_handler": {**KOTLIN_EVENT_HANDLER, "authorization": None}}
    resp = await client.put(f"/1/streams/{stream_id}", json=body)
    assert resp.status == 200, await resp.text()
    stream = await get_stream(client, stream_id)
    assert stream["event_handler"]["authorization"] == {"account_id": ACCOUNT}


async def test_v2_event_handler_without_authorization(client: Client) -> None:
    analytics = [{"event_handler": {"handler_id": HANDLER_ID}}, {"mode": 2, "event_handler": {
        "handler_id": HANDLER_ID, "authorization": {"account_id": OTHER_ACCOUNT}}}]  # fmt: skip
    stream_id = await create_stream(client, v2_body(analytics=analytics), 2)
    stream = await get_stream(client, stream_id, 2)
    handlers = [item["event_handler"] for item in stream["data"]["analytics"]]
    assert [h["authorization"] for h in handlers] == [
        {"account_id": ACCOUNT},
        {"account_id": OTHER_ACCOUNT},
    ]


async def test_authorization_still_validated_when_given(client: Client) -> None:
    body = kotlin_body()
    body["event_handler"]["authorization"] = {"account_id": "not-a-uuid"}
    resp = await client.post("/1/streams", json=body)
    answer = await expect_error(resp, 400, 12022)
    assert "authorization" in answer["detail"]


@VERSIONS
async def test_create_linked_to_a_group_by_id(client: Client, version: int) -> None:
    body = v1_body if version == 1 else v2_body
    group_id = await create_group(client, "entrance")
    stream_id = await create_stream(client, body(group_id=group_id), version)
    assert (await get_stream(client, stream_id, version))["groups"] == ["entrance"]
    resp = await client.get(
        f"/{version}/streams/processing/queue", params={"limit": 5, "group_ids": group_id}
    )
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [stream_id]
    # by name and id of the same group: linked once
    both = await create_stream(client, body(group_id=group_id, group_name="entrance"), version)
    assert (await get_stream(client, both, version))["groups"] == ["entrance"]
    other = await create_group(client, "exit")
    two = await create_stream(client, body(group_id=other, group_name="entrance"), version)
    assert (await get_stream(client, two, version))["groups"] == ["entrance", "exit"]


@VERSIONS
async def test_create_with_unknown_group_id_is_39008(
    client: Client, database: Database, version: int
) -> None:
    body = v1_body if version == 1 else v2_body
    foreign = await create_group(client, "theirs", OTHER_ACCOUNT)
    before = await snapshot(database)
    for group_id in (MISSING_ID, foreign):
        resp = await client.post(f"/{version}/streams", json=body(group_id=group_id))
        answer = await expect_error(resp, 404, 39008)
        assert answer["detail"] == f"Group with id '{group_id}' not found"
    resp = await client.post(f"/{version}/streams", json=body(group_id="nope"))
    await expect_error(resp, 400, 12022)
    assert await snapshot(database) == before
