"""What goes in comes out: the seed's examples, the defaults, one stream read through both
API versions, and hypothesis-generated bodies (valid ones round-trip through create, replace
and get; a body broken in one place is 12022 and writes nothing)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    AUTORESTART_DEFAULTS,
    LOCATION_DEFAULTS,
    STREAM_KEYS_V1,
    STREAM_KEYS_V2,
    V2_SETTINGS_DEFAULTS,
    Client,
    analytics_item,
    assert_contains,
    body_for,
    count,
    create_group,
    create_stream,
    expect_error,
    get_stream,
    list_ids,
    seed_example,
    snapshot,
    v1_body,
    v2_body,
)

VERSIONS = pytest.mark.parametrize("version", [1, 2])
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
GROUPS = ("cams", "doors")
DROI = {"x": 10, "y": 20.5, "width": 50, "height": 40, "mode": "percent"}
S = st.SearchStrategy[Any]


# --- strategies of valid bodies (JSON-like dicts; optional keys present or absent) --------


def obj(required: dict[str, S] | None = None, **optional: S) -> S:
    return st.fixed_dictionaries(required or {}, optional=optional)


def ints(low: int, high: int) -> S:
    return st.integers(low, high)


def numbers(low: float, high: float) -> S:
    """A JSON number: an integer or a finite float, kept as such by the service."""
    return st.one_of(
        st.integers(math.ceil(low), math.floor(high)), st.floats(low, high, allow_nan=False)
    )


TEXT = st.text(max_size=40)
BOOL = st.booleans()
UUIDS = st.uuids().map(str)
ROI = st.one_of(
    obj({k: ints(0, 65536) for k in ("x", "y", "width", "height")}, mode=st.just("abs")),
    obj({k: numbers(0, 100) for k in ("x", "y", "width", "height")} | {"mode": st.just("percent")}),
)
AUTH = st.one_of(obj({"token": TEXT}), obj({"account_id": UUIDS}))
DATA_POLICIES = {
    "frame_processing_mode": st.sampled_from(["auto", "full", "scale"]),
    "real_time_mode_fps": ints(0, 120),
    "ffmpeg_threads_number": ints(0, 64),
}
PERIODS = {
    "time_period_of_searching": numbers(-1, 1e6),
    "silent_period": numbers(-1, 1e6),
    "type": st.sampled_from(["sec", "frames"]),
}
HEALTHCHECK = obj(**dict.fromkeys(("max_error_count", "period", "retry_delay"), ints(0, 10**6)))
PRIMARY_TRACK = obj(use_primary_track_policy=BOOL, best_shot_min_size=ints(0, 4096))
FILTERING = {
    "detection_yaw_threshold": numbers(0, 180),
    "yaw_number": ints(1, 10),
    "yaw_collection_mode": BOOL,
    "mouth_occlusion_threshold": numbers(0, 1),
    "min_body_size_threshold": numbers(0, 1e4),
}
LIVENESS = {
    "use_mask_liveness_filtration": BOOL,
    "liveness_mode": st.sampled_from([0, 1, 2]),
    "liveness_threshold": numbers(0, 1),
}
COMMON = {
    "name": st.text(max_size=128),
    "description": st.text(max_size=512),
    "location": obj(
        **dict.fromkeys(("city", "area", "street"), st.text(max_size=36)),
        geo_position=obj({"longitude": numbers(-180, 180), "latitude": numbers(-90, 90)}),
    ),
    "autorestart": obj(
        restart=st.sampled_from([0, 1]), attempt_count=ints(1, 100), delay=ints(1, 600)
    ),
    "status": st.sampled_from(["pending", "pause"]),
    "group_name": st.sampled_from(GROUPS),
}


def stream_data(required: dict[str, S], **optional: S) -> S:
    source = {"roi": ROI, "rotation": st.sampled_from([0, 90, 180, 270])} | optional
    live = source | {"preferred_program_stream_frame_width": ints(1, 4096), "endless": BOOL}
    reference = {"reference": st.text(max_size=512)}
    return st.one_of(
        obj({"type": st.just("tcp")} | reference | required, **live),
        obj({"type": st.just("udp")} | required, **live, **reference),
        obj({"type": st.sampled_from(["videofile", "images"])} | reference | required, **source),
    )


V1_BODIES = obj(
    {
        "account_id": st.just(ACCOUNT),
        "data": stream_data({}, droi=ROI),
        "event_handler": obj(
            {"bestshot_handler": obj({"handler_id": UUIDS}), "authorization": AUTH},
            origin=TEXT,
            api_version=ints(1, 10),
            detection_handler=obj({"handler_id": UUIDS}),
            frame_store=TEXT,
        ),
    },
    policies=obj(
        sending=obj(**PERIODS, number_of_bestshots_to_send=ints(0, 100), send_only_full_set=BOOL),
        primary_track_policy=PRIMARY_TRACK,
        liveness=obj(
            **LIVENESS,
            use_shoulders_liveness_filtration=BOOL,
            livenesses_weights=st.lists(numbers(0, 1), min_size=3, max_size=3),
        ),
        filtering=obj(**FILTERING, min_score=numbers(0, 1)),
        **DATA_POLICIES,
        healthcheck=HEALTHCHECK,
    ),
    **COMMON,
)
ANALYTICS = obj(
    {
        "event_handler": obj(
            {"handler_id": UUIDS, "authorization": AUTH}, type=st.just("luna_handler")
        )
    },
    mode=st.sampled_from([1, 2, 3]),
    enabled=BOOL,
    droi=ROI,
    filtering=obj(**FILTERING, min_score_face=numbers(0, 1), min_score_body=numbers(0, 1)),
    liveness=obj(**LIVENESS, livenesses_weights=st.lists(numbers(0, 1), min_size=2, max_size=2)),
    primary_track_policy=PRIMARY_TRACK,
    sending=obj(
        **PERIODS,
        full_frame_settings=ints(0, 10),
        bestshot_settings=obj(
            face_bestshots_to_send=ints(0, 100), body_bestshots_to_send=ints(0, 100)
        ),
        body=obj(delete_track_after_sending=BOOL),
    ),
    healthcheck=HEALTHCHECK,
)
V2_BODIES = obj(
    {
        "account_id": st.just(ACCOUNT),
        "data": stream_data(
            {"analytics": st.lists(ANALYTICS, min_size=1, max_size=3)}, **DATA_POLICIES
        ),
    },
    **COMMON,
)
BODIES = {1: V1_BODIES, 2: V2_BODIES}


# --- one stream, two API versions ---------------------------------------------------------


async def test_v1_stream_read_through_v2(client: Client) -> None:
    example = seed_example("v1_create_tcp")
    del example["group_name"]
    stream_id = await create_stream(client, example, 1)
    stream = await get_stream(client, stream_id, 2)
    assert set(stream) == STREAM_KEYS_V2
    data, policies = stream["data"], example["policies"]
    (item,) = data["analytics"]
    assert (item["mode"], item["enabled"], item["droi"]) == (1, True, example["data"]["droi"])
    assert "droi" not in data
    assert item["event_handler"] == {
        "type": "luna_handler",
        "handler_id": example["event_handler"]["bestshot_handler"]["handler_id"],
        "authorization": example["event_handler"]["authorization"],
    }
    assert item["filtering"]["min_score_face"] == policies["filtering"]["min_score"]
    assert item["filtering"]["mouth_occlusion_threshold"] == 0.1
    assert item["liveness"]["livenesses_weights"] == [0.45, 0.5]
    assert item["healthcheck"] == policies["healthcheck"]
    assert item["primary_track_policy"] == policies["primary_track_policy"]
    assert item["sending"]["bestshot_settings"]["face_bestshots_to_send"] == 1
    assert item["sending"]["body"] == {
        "send_only_full_set": True,
        "delete_track_after_sending": False,
    }
    assert data["frame_processing_mode"] == policies["frame_processing_mode"]
    # the smallest v1 body reads through v2 exactly as the smallest v2 body
    stream_id = await create_stream(client, v1_body(), 1)
    assert (await get_stream(client, stream_id, 2))["data"] == V2_SETTINGS_DEFAULTS["data"]


async def test_v2_stream_read_through_v1(client: Client) -> None:
    example = seed_example("v2_create_tcp")
    del example["group_name"]
    example["data"]["analytics"].append(analytics_item(mode=2))
    stream_id = await create_stream(client, example, 2)
    stream = await get_stream(client, stream_id, 1)
    assert set(stream) == STREAM_KEYS_V1
    item = example["data"]["analytics"][0]
    assert stream["data"]["droi"] == item["droi"]
    assert stream["data"]["reference"] == example["data"]["reference"]
    assert stream["event_handler"]["bestshot_handler"] == {
        "handler_id": item["event_handler"]["handler_id"]
    }
    assert stream["event_handler"]["authorization"] == item["event_handler"]["authorization"]
    policies = stream["policies"]
    assert policies["filtering"]["min_score"] == item["filtering"]["min_score_face"]
    assert policies["filtering"]["min_body_size_threshold"] == 250
    assert policies["liveness"]["livenesses_weights"] == [0, 0.45, 0.5]
    assert policies["liveness"]["use_mask_liveness_filtration"] is True
    assert policies["sending"]["delete_track_after_sending"] is True
    assert policies["sending"]["number_of_bestshots_to_send"] == 1
    assert await list_ids(client, 1) == [stream_id]


async def test_replace_through_the_other_version(client: Client) -> None:
    stream_id = await create_stream(client, v1_body(name="was v1"), 1)
    body = v2_body(name="now v2", analytics=[analytics_item(mode=3, droi=DROI)])
    resp = await client.put(f"/2/streams/{stream_id}", json=body)
    assert await resp.json() == {"stream_id": stream_id, "version": 2}
    assert_contains(body, await get_stream(client, stream_id, 2))
    stream = await get_stream(client, stream_id, 1)
    assert (stream["name"], stream["version"], stream["data"]["droi"]) == ("now v2", 2, DROI)
    resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(data={"type": "udp"}))
    assert (await resp.json())["version"] == 3
    (item,) = (await get_stream(client, stream_id, 2))["data"]["analytics"]
    assert (item["mode"], item["droi"]["mode"]) == (1, "abs")


@pytest.mark.parametrize("item", [analytics_item(mode=2), analytics_item(enabled=False)])
async def test_v2_stream_without_a_v1_form_is_39011(
    client: Client, database: Database, item: dict[str, Any]
) -> None:
    stream_id = await create_stream(client, v2_body(analytics=[item]), 2)
    before = await snapshot(database)
    body = await expect_error(await client.get(f"/1/streams/{stream_id}"), 409, 39011)
    assert stream_id in body["detail"]
    assert (await get_stream(client, stream_id, 2))["data"]["analytics"][0]["mode"] == item.get(
        "mode", 1
    )
    # v1 lists, counts and peeks see only the streams v1 can show; v2 sees them all
    assert (await count(client, 1), await count(client, 2)) == (0, 1)
    assert (await list_ids(client, 1), await list_ids(client, 2)) == ([], [stream_id])
    peek = {}
    for version in (1, 2):
        resp = await client.get(f"/{version}/streams/processing/queue", params={"limit": "5"})
        peek[version] = [s["stream_id"] for s in (await resp.json())["streams"]]
    assert peek == {1: [], 2: [stream_id]}
    assert await snapshot(database) == before


async def test_v1_claims_leave_streams_v1_cannot_show_to_v2_agents(client: Client) -> None:
    hidden = await create_stream(client, v2_body(analytics=[analytics_item(mode=2)]), 2)
    shown = await create_stream(client, v1_body(), 1)
    claim = {"filters": {}, "limit": 5}
    resp = await client.post("/1/streams/processing/queue", json=claim)
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [shown]
    # the hidden stream's token went back to the queue: a v2 agent takes it
    resp = await client.post("/2/streams/processing/queue", json=claim)
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [hidden]
    resp = await client.post(
        "/1/streams/processing/queue", json={"filters": {"stream_ids": [hidden]}, "limit": 1}
    )
    assert (await resp.json())["streams"] == []


# --- generated bodies ---------------------------------------------------------------------


async def ensure_groups(client: Client, database: Database) -> None:
    """The groups generated bodies may name (created once per test, before the examples)."""
    if not await database.groups.count_documents({}):
        for name in GROUPS:
            await create_group(client, name)


def check_stream(stream: dict[str, Any], body: dict[str, Any], groups: list[str]) -> None:
    """The stream shows every value of ``body`` unchanged, defaults for the rest."""
    assert_contains(
        {k: v for k, v in body.items() if k not in ("group_name", "autorestart")}, stream
    )
    assert stream["status"] == body.get("status", "pending")
    assert stream["location"] == LOCATION_DEFAULTS | body.get("location", {})
    autorestart = AUTORESTART_DEFAULTS | body.get("autorestart", {})
    autorestart["status"] = "enabled" if autorestart["restart"] else "disabled"
    assert stream["autorestart"] == autorestart
    assert stream["groups"] == groups


@VERSIONS
@HYPOTHESIS
@given(data=st.data())
async def test_generated_bodies_round_trip(
    client: Client, database: Database, version: int, data: st.DataObject
) -> None:
    await ensure_groups(client, database)
    first = data.draw(BODIES[version], label="create")
    stream_id = await create_stream(client, first, version)
    groups = [first["group_name"]] if "group_name" in first else []
    check_stream(await get_stream(client, stream_id, version), first, groups)

    second = data.draw(BODIES[version], label="replace")
    resp = await client.put(f"/{version}/streams/{stream_id}", json=second)
    assert await resp.json() == {"stream_id": stream_id, "version": 2}
    if second.get("group_name") not in (None, *groups):
        groups.append(second["group_name"])
    stream = await get_stream(client, stream_id, version)
    check_stream(stream, second, groups)
    assert stream["version"] == 2

    resp = await client.get(f"/{3 - version}/streams/{stream_id}")
    first_item = second["data"]["analytics"][0] if version == 2 else {}
    if first_item.get("mode") == 2 or first_item.get("enabled") is False:
        await expect_error(resp, 409, 39011)
    else:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["data"]["type"] == second["data"]["type"]


def broken_bound(keys: tuple[str | int, ...], value: Any, path: str, message: str) -> Any:
    return (keys, value, path, message)


EXTRA = "Additional properties are not allowed ('faces' was unexpected)"
COMMON_BREAKS = [
    broken_bound(("faces",), 1, "", EXTRA),
    broken_bound(("name",), "n" * 129, "name", f"{'n' * 129!r} is too long"),
    broken_bound(
        ("autorestart", "delay"), 601, "autorestart.delay", "601 is greater than the maximum of 600"
    ),
    broken_bound(
        ("autorestart", "restart"), False, "autorestart.restart", "False is not of type 'integer'"
    ),
    broken_bound(("location", "city"), "c" * 37, "location.city", f"{'c' * 37!r} is too long"),
    broken_bound(
        ("location", "geo_position"),
        {"longitude": 181, "latitude": 0},
        "location.geo_position.longitude",
        "181 is greater than the maximum of 180",
    ),
    broken_bound(("data", "rotation"), 45, "data.rotation", "45 is not one of [0, 90, 180, 270]"),
    broken_bound(
        ("data", "roi"),
        {"x": -1, "y": 0, "width": 0, "height": 0},
        "data.roi.x",
        "-1 is less than the minimum of 0",
    ),
    broken_bound(("account_id",), 7, "account_id", "7 is not of type 'string'"),
]
BREAKS = {
    1: [
        *COMMON_BREAKS,
        broken_bound(("event_handler", "faces"), [], "event_handler", EXTRA),
        broken_bound(("policies", "filtering", "min_score"), "0.5", "policies.filtering.min_score",
                     "'0.5' is not of type 'number'"),
        broken_bound(("policies", "liveness", "livenesses_weights"), [0.5],
                     "policies.liveness.livenesses_weights", "[0.5] is too short"),
        broken_bound(("event_handler", "authorization"), {"token": 5},
                     "event_handler.authorization.token", "5 is not of type 'string'"),
    ],
    2: [
        *COMMON_BREAKS,
        broken_bound(("policies",), {}, "", EXTRA.replace("faces", "policies")),
        broken_bound(("data", "analytics"), [], "data.analytics", "[] should be non-empty"),
        broken_bound(("data", "real_time_mode_fps"), -1, "data.real_time_mode_fps",
                     "-1 is less than the minimum of 0"),
        broken_bound(("data", "analytics", 0, "filtering", "min_score_body"), 1.01,
                     "data.analytics.0.filtering.min_score_body",
                     "1.01 is greater than the maximum of 1"),
        broken_bound(("data", "analytics", 0, "event_handler", "type"), "webhook",
                     "data.analytics.0.event_handler.type",
                     "'webhook' is not one of ['luna_handler']"),
    ],
}  # fmt: skip


def set_path(body: dict[str, Any], keys: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[keys[-1]] = value
    return body


@VERSIONS
@HYPOTHESIS
@given(data=st.data())
async def test_generated_bodies_broken_in_one_place_are_12022(
    client: Client, database: Database, version: int, data: st.DataObject
) -> None:
    await ensure_groups(client, database)
    if not await database.streams.count_documents({}):
        await create_stream(client, body_for(version), version)
    (stream_id,) = await list_ids(client, version)
    keys, value, path, message = data.draw(st.sampled_from(BREAKS[version]), label="break")
    body = set_path(data.draw(BODIES[version], label="body"), keys, value)
    detail = f"Failed to validate input json. Path: '{path}', message: '{message}'"
    before = await snapshot(database)
    await expect_error(await client.post(f"/{version}/streams", json=body), 400, 12022, detail)
    resp = await client.put(f"/{version}/streams/{stream_id}", json=body)
    await expect_error(resp, 400, 12022, detail)
    assert await snapshot(database) == before
