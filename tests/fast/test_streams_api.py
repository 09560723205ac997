"""Streams v1 and v2 over HTTP: every endpoint, errors (writing nothing), statuses and logs.

Stream logs are read from MongoDB directly (their HTTP API comes later).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    AUTORESTART_DEFAULTS,
    LOCATION_DEFAULTS,
    MISSING_ID,
    OTHER_ACCOUNT,
    STREAM_KEYS_V1,
    STREAM_KEYS_V2,
    V1_SETTINGS_DEFAULTS,
    V2_SETTINGS_DEFAULTS,
    Client,
    analytics_item,
    assert_contains,
    bad_json_detail,
    body_for,
    count,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    list_ids,
    log_rows,
    seed_example,
    set_fields,
    snapshot,
    v1_body,
    v2_body,
)

UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
VERSIONS = pytest.mark.parametrize("version", [1, 2])
JSON_HEADER = {"Content-Type": "application/json"}
NOW = datetime.now(UTC)


def parse_time(value: str) -> datetime:
    assert RFC3339_MS.fullmatch(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@VERSIONS
async def test_stream_lifecycle(client: Client, database: Database, version: int) -> None:
    prefix = f"/{version}/streams"
    before = datetime.now(UTC) - timedelta(seconds=1)
    resp = await client.post(prefix, json=body_for(version, name="cam", description="first"))
    assert resp.status == 201
    created = await resp.json()
    assert set(created) == {"stream_id", "version"}
    assert created["version"] == 1
    stream_id = created["stream_id"]
    assert UUID.fullmatch(stream_id)

    stream = await get_stream(client, stream_id, version)
    assert set(stream) == (STREAM_KEYS_V1 if version == 1 else STREAM_KEYS_V2)
    assert stream["stream_id"] == stream_id
    assert [stream[k] for k in ("account_id", "name", "description")] == [ACCOUNT, "cam", "first"]
    assert (stream["status"], stream["version"], stream["groups"]) == ("pending", 1, [])
    assert (stream["last_error"], stream["video_info"], stream["preview"]) == (None, None, None)
    created_at = parse_time(stream["create_time"])
    assert before <= created_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert await list_ids(client, version) == [stream_id]
    assert await count(client, version) == 1

    resp = await client.patch(f"{prefix}/{stream_id}", json=seed_example("v1_patch"))
    assert (resp.status, await resp.read()) == (204, b"")
    stream = await get_stream(client, stream_id, version)
    assert (stream["description"], stream["status"], stream["version"]) == (
        "Cancelled stream description.",
        "cancel",
        1,
    )

    replacement = body_for(version, name="cam-b", reference="rtsp://camera/2")
    resp = await client.put(f"{prefix}/{stream_id}", json=replacement)
    assert resp.status == 200
    assert await resp.json() == {"stream_id": stream_id, "version": 2}
    stream = await get_stream(client, stream_id, version)
    assert (stream["name"], stream["description"]) == ("cam-b", "")
    assert stream["data"]["reference"] == "rtsp://camera/2"
    assert (stream["status"], stream["version"]) == ("pending", 2)
    assert parse_time(stream["create_time"]) == created_at

    resp = await client.delete(f"{prefix}/{stream_id}")
    assert (resp.status, await resp.read()) == (204, b"")
    resp = await client.delete(f"{prefix}/{stream_id}")
    await expect_error(resp, 404, 39001, f"Stream with id '{stream_id}' not found")
    await expect_error(await client.get(f"{prefix}/{stream_id}"), 404, 39001)
    assert await list_ids(client, version) == []
    assert await count(client, version) == 0
    assert await database.streams.count_documents({}) == 0


# --- the seed examples and the defaults ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "defaults"),
    [
        ("v1_create_tcp", 1, {"event_handler": {"origin": "http://127.0.0.1:5000"}}),
        ("v1_put_udp", 1, {"event_handler": {"frame_store": None}}),
        ("v2_create_tcp", 2, {"data": {"preferred_program_stream_frame_width": 800}}),
        ("v2_put_udp", 2, {"data": {"reference": None, "analytics": [{"mode": 1}]}}),
    ],
)
async def test_seed_examples_round_trip(
    client: Client, name: str, version: int, defaults: dict[str, Any]
) -> None:
    example = seed_example(name)
    await create_group(client, example["group_name"], example["account_id"])
    stream_id = await create_stream(client, example, version)
    stream = await get_stream(client, stream_id, version)
    given = {k: v for k, v in example.items() if k not in ("group_name", "autorestart")}
    assert_contains(given, stream)
    assert_contains(defaults, stream)
    assert stream["groups"] == [example["group_name"]]
    assert stream["autorestart"] == {**AUTORESTART_DEFAULTS, **example.get("autorestart", {})}
    # the second read (through a list) shows the same stream
    resp = await client.get(f"/{version}/streams", params={"stream_ids": stream_id})
    assert (await resp.json())["streams"] == [stream]


@pytest.mark.parametrize(("name", "version"), [("v1_stream_udp", 1), ("v2_stream_udp", 2)])
async def test_stream_has_every_field_of_the_seed_stream(
    client: Client, database: Database, name: str, version: int
) -> None:
    def keys(value: Any, path: str = "") -> set[str]:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return keys(value[0], f"{path}.0")
        if not isinstance(value, dict):
            return set()
        return {f"{path}.{k}" for k in value} | {x for k, v in value.items() for x in keys(v, k)}

    example = seed_example(name)
    body = body_for(version, location=example["location"])
    if version == 1:
        body["event_handler"] = example["event_handler"]
    stream_id = await create_stream(client, body, version)
    agent = {"video_info": example["video_info"], "preview": example["preview"]}
    await set_fields(database, stream_id, **agent, **{"autorestart.last_attempt_time": NOW})
    stream = await get_stream(client, stream_id, version)
    assert keys(example) - keys(stream) == set()
    assert {key: stream[key] for key in agent} == agent


@VERSIONS
async def test_smallest_body_gets_complete_settings(client: Client, version: int) -> None:
    stream_id = await create_stream(client, body_for(version), version)
    stream = await get_stream(client, stream_id, version)
    expected = V1_SETTINGS_DEFAULTS if version == 1 else V2_SETTINGS_DEFAULTS
    assert {key: stream[key] for key in expected} == expected
    assert stream["location"] == LOCATION_DEFAULTS
    assert stream["autorestart"] == AUTORESTART_DEFAULTS


# --- errors -----------------------------------------------------------------------------

ROI = {"x": 0, "y": 0, "width": 0, "height": 0}
BAD_BODIES = [
    (1, {"faces": 1}, "", "Additional properties are not allowed ('faces' was unexpected)"),
    (2, {"policies": {}}, "", "Additional properties are not allowed ('policies' was unexpected)"),
    (1, {"name": 5}, "name", "5 is not of type 'string'"),
    (1, {"name": "n" * 129}, "name", f"'{'n' * 129}' is too long"),
    (1, {"policies": {"real_time_mode_fps": "1"}}, "policies.real_time_mode_fps",
     "'1' is not of type 'integer'"),
    (1, {"autorestart": {"restart": True}}, "autorestart.restart",
     "True is not of type 'integer'"),
    (1, {"autorestart": {"delay": 0}}, "autorestart.delay", "0 is less than the minimum of 1"),
    (1, {"policies": {"filtering": {"min_score": 1.5}}}, "policies.filtering.min_score",
     "1.5 is greater than the maximum of 1"),
    (1, {"data": {"type": "tcp", "reference": "r", "roi": ROI | {"x": 65537}}}, "data.roi.x",
     "65537 is greater than the maximum of 65536"),
    (1, {"data": {"type": "tcp"}}, "data", "'reference' is a required property"),
    (1, {"data": {"type": "rtmp", "reference": "r"}}, "data.type",
     "'rtmp' is not one of ['tcp', 'udp', 'videofile', 'images']"),
    (1, {"event_handler": None}, "event_handler", "None is not of type 'object'"),
    (1, {"account_id": "nope"}, "account_id", f"'nope' does not match '{UUID.pattern}'"),
    (2, {"data": {"type": "udp", "analytics": []}}, "data.analytics", "[] should be non-empty"),
    (2, {"data": {"type": "udp", "analytics": [{"mode": 1}]}}, "data.analytics.0",
     "'event_handler' is a required property"),
    (2, {"data": {"type": "udp", "analytics": [analytics_item(mode=4)]}},
     "data.analytics.0.mode", "4 is not one of [1, 2, 3]"),
    (1, {"group_name": "no spaces"}, "group_name",
     "'no spaces' does not match '^[a-zA-Z0-9_\\\\-]{1,128}$'"),
]  # fmt: skip


async def test_bad_body_is_12022(client: Client, database: Database) -> None:
    """Unknown field, wrong type, out of bounds, missing: on create and replace, v1 and v2."""
    stream_ids = {v: await create_stream(client, body_for(v), v) for v in (1, 2)}
    before = await snapshot(database)
    for version, change, path, message in BAD_BODIES:
        body = body_for(version) | change
        detail = bad_json_detail(path, message)
        await expect_error(await client.post(f"/{version}/streams", json=body), 400, 12022, detail)
        resp = await client.put(f"/{version}/streams/{stream_ids[version]}", json=body)
        await expect_error(resp, 400, 12022, detail)
    assert await snapshot(database) == before


async def test_missing_required_and_non_object_bodies(client: Client, database: Database) -> None:
    stream_id = await create_stream(client, v1_body())
    before = await snapshot(database)
    body = v1_body()
    del body["event_handler"]
    one = f"/1/streams/{stream_id}"
    cases: list[tuple[str, str, Any, str, str]] = [
        ("POST", "/1/streams", body, "", "'event_handler' is a required property"),
        ("POST", "/1/streams", [], "", "[] is not of type 'object'"),
        ("PUT", one, "stream", "", "'stream' is not of type 'object'"),
        ("POST", "/2/streams", None, "", "None is not of type 'object'"),
        ("PATCH", one, {}, "", "at least one field must have a value"),
        ("PATCH", one, {"description": "d" * 129}, "description", f"{'d' * 129!r} is too long"),
    ]
    for method, url, payload, path, message in cases:
        resp = await client.request(method, url, data=json.dumps(payload), headers=JSON_HEADER)
        await expect_error(resp, 400, 12022, bad_json_detail(path, message))
    assert await snapshot(database) == before


@VERSIONS
async def test_not_json_and_wrong_content_type(
    client: Client, database: Database, version: int
) -> None:
    stream_id = await create_stream(client, body_for(version), version)
    before = await snapshot(database)
    for method, path in [("POST", ""), ("PUT", f"/{stream_id}"), ("PATCH", f"/{stream_id}")]:
        url = f"/{version}/streams{path}"
        resp = await client.request(method, url, data=b'{"name": ', headers=JSON_HEADER)
        body = await expect_error(resp, 400, 12027)
        assert body["detail"].startswith("Failed to validate input json. Message: ")
        resp = await client.request(method, url, data=b"NaN", headers=JSON_HEADER)
        await expect_error(resp, 400, 12027)
        text_plain = {"Content-Type": "text/plain"}
        resp = await client.request(method, url, data=b'{"status": "x"}', headers=text_plain)
        detail = "Content type is unacceptable, allowed types: 'application/json'"
        await expect_error(resp, 415, 12023, detail)
    assert await snapshot(database) == before
    with_charset = {"Content-Type": "application/json; charset=utf-8"}
    body = json.dumps({"description": "é"}).encode()
    resp = await client.patch(f"/{version}/streams/{stream_id}", data=body, headers=with_charset)
    assert resp.status == 204
    assert (await get_stream(client, stream_id, version))["description"] == "é"


@VERSIONS
async def test_missing_stream_and_bad_path_id(
    client: Client, database: Database, version: int
) -> None:
    await create_stream(client, body_for(version), version)
    before = await snapshot(database)
    url = f"/{version}/streams/{MISSING_ID}"
    detail = f"Stream with id '{MISSING_ID}' not found"
    await expect_error(await client.get(url), 404, 39001, detail)
    await expect_error(await client.patch(url, json={"status": "pause"}), 404, 39001, detail)
    await expect_error(await client.put(url, json=body_for(version)), 404, 39001, detail)
    await expect_error(await client.delete(url), 404, 39001, detail)
    for bad in ("not-a-uuid", MISSING_ID.upper()):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            resp = await client.request(method, f"/{version}/streams/{bad}", json={})
            await expect_error(resp, 404, 12030)
    assert await snapshot(database) == before


async def test_bad_status_unknown_group_and_other_account(
    client: Client, database: Database
) -> None:
    await create_group(client, "theirs", OTHER_ACCOUNT)
    stream_id = await create_stream(client, v1_body())
    before = await snapshot(database)
    for status in ("cancel", "in_progress", "bogus"):
        resp = await client.post("/1/streams", json=v1_body(status=status))
        detail = f"'{status}' is not valid stream status; permitted: pending, pause"
        await expect_error(resp, 400, 39002, detail)
        resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(status=status))
        await expect_error(resp, 400, 39002)
    for status in ("done", "in_progress", "restart"):
        resp = await client.patch(f"/1/streams/{stream_id}", json={"status": status})
        detail = f"'{status}' is not valid stream status; permitted: pending, pause, cancel"
        await expect_error(resp, 400, 39002, detail)
    for name in ("nowhere", "theirs"):  # a group of another account is not found either
        resp = await client.post("/2/streams", json=v2_body(group_name=name))
        await expect_error(resp, 404, 39007, f"Group named '{name}' not found")
        resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(group_name=name))
        await expect_error(resp, 404, 39007)
    scoped = {"account_id": OTHER_ACCOUNT}
    url = f"/1/streams/{stream_id}"
    await expect_error(await client.get(url, params=scoped), 404, 39001)
    await expect_error(await client.patch(url, params=scoped, json={"status": "pause"}), 404, 39001)
    resp = await client.put(url, json=v1_body(account_id=OTHER_ACCOUNT))
    await expect_error(resp, 404, 39001)
    await expect_error(await client.delete(url, params=scoped), 404, 39001)
    resp = await client.delete("/1/streams", params=scoped, json={"stream_ids": [stream_id]})
    assert resp.status == 204
    await expect_error(await client.get(url, params={"account_id": "x"}), 400, 12012)
    assert await snapshot(database) == before
    assert (await get_stream(client, stream_id, account_id=ACCOUNT))["status"] == "pending"


@pytest.mark.parametrize("finished", ["done", "failure"])
async def test_cancel_of_a_finished_stream_is_39005(
    client: Client, database: Database, finished: str
) -> None:
    stream_id = await create_stream(client, v1_body())
    await set_fields(database, stream_id, status=finished)
    before = await snapshot(database)
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "cancel"})
    detail = f"Stream '{stream_id}' is finished and cannot be cancelled"
    await expect_error(resp, 400, 39005, detail)
    assert await snapshot(database) == before
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "pending"})
    assert resp.status == 204
    assert await log_rows(database, stream_id) == [("pending", 1), ("pending", 1)]


@pytest.mark.parametrize(("source", "refused"), [("videofile", True), ("tcp", False)])
async def test_pause_of_an_in_progress_stream(
    client: Client, database: Database, source: str, refused: bool
) -> None:
    stream_id = await create_stream(client, v1_body(source=source))
    await set_fields(database, stream_id, status="in_progress")
    before = await snapshot(database)
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "pause"})
    if refused:
        detail = f"Stream '{stream_id}' already in progress and cannot be stopped"
        await expect_error(resp, 400, 39003, detail)
        assert await snapshot(database) == before
    else:
        assert resp.status == 204
        assert (await get_stream(client, stream_id))["status"] == "pause"
        assert await log_rows(database, stream_id) == [("pending", 1), ("pause", 1)]


# --- statuses and logs --------------------------------------------------------------------


async def test_status_changes_write_one_log_row_each(client: Client, database: Database) -> None:
    stream_id = await create_stream(client, v1_body())
    url = f"/1/streams/{stream_id}"
    assert await log_rows(database, stream_id) == [("pending", 1)]
    assert (await client.patch(url, json={"status": "pause"})).status == 204
    assert (await client.patch(url, json={"status": "pause"})).status == 204
    assert (await client.patch(url, json={"description": "only text"})).status == 204
    assert await log_rows(database, stream_id) == [("pending", 1), ("pause", 1)]
    assert (await client.patch(url, json={"status": "cancel"})).status == 204
    assert (await log_rows(database, stream_id))[2:] == [("cancel", 1)]
    resp = await client.put(url, json=v1_body(status="pause"))
    assert (await resp.json())["version"] == 2
    resp = await client.put(url, json=v1_body())
    assert (await resp.json())["version"] == 3
    assert (await log_rows(database, stream_id))[3:] == [
        ("restart", 2),
        ("pause", 2),
        ("restart", 3),
        ("pending", 3),
    ]
    await set_fields(database, stream_id, status="in_progress")
    assert (await client.patch(url, json={"status": "pending"})).status == 204
    assert (await log_rows(database, stream_id))[7:] == [("restart", 3), ("pending", 3)]
    assert (await client.delete(url)).status == 204
    rows = await log_rows(database, stream_id)
    assert rows[-1] == ("deleted", 3)
    assert len(rows) == 10
    row = await database.stream_logs.find_one({"stream_id": stream_id, "status": "deleted"})
    assert row is not None and row["account_id"] == ACCOUNT


async def test_patch_to_pending_resets_autorestart(client: Client, database: Database) -> None:
    body = v1_body(autorestart={"restart": 1, "attempt_count": 3, "delay": 5})
    stream_id = await create_stream(client, body)
    assert (await get_stream(client, stream_id))["autorestart"] == {
        "restart": 1,
        "attempt_count": 3,
        "delay": 5,
        "current_attempt": 0,
        "last_attempt_time": None,
        "status": "enabled",
    }
    spent = {"current_attempt": 3, "status": "failed", "last_attempt_time": datetime.now(UTC)}
    await set_fields(
        database, stream_id, status="failure", **{f"autorestart.{k}": v for k, v in spent.items()}
    )
    stored = (await get_stream(client, stream_id))["autorestart"]
    assert (stored["current_attempt"], stored["status"]) == (3, "failed")
    assert parse_time(stored["last_attempt_time"])
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": "pending"})
    assert resp.status == 204
    stream = await get_stream(client, stream_id)
    assert stream["status"] == "pending"
    assert stream["autorestart"]["current_attempt"] == 0
    assert stream["autorestart"]["status"] == "enabled"
    assert stream["autorestart"]["last_attempt_time"] is None
