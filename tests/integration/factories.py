"""Builders of valid v1/v2 request bodies and small helpers for the HTTP conformance tests.

Bodies are plain JSON-like dicts, fresh on every call, so a test may change them freely.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aio_pika
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from shared.core.settings import Settings
from shared.store.mongo import Database

Client = TestClient[Any, Any]
Json = dict[str, Any]

SEED_EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "seed_examples"

ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
OTHER_ACCOUNT = "8950722f-3fd4-4223-b48f-03f95f0e8dfb"
HANDLER_ID = "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"
MISSING_ID = "00000000-0000-4000-a000-000000642312"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig"
#: the video an agent reports in its feedback (``video_info``)
VIDEO_INFO: Json = {
    "width": 1920,
    "height": 1080,
    "frame_rate": 25,
    "bit_rate": 4000000,
    "gop_size": 50,
    "start_time": "2024-03-01T10:00:00Z",
    "duration": 12.5,
    "progress": 0.25,
}


def seed_example(name: str) -> Any:
    """``tests/fixtures/seed_examples/<name>.json``, a fresh object every call."""
    return json.loads((SEED_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def v1_body(
    *,
    source: str = "tcp",
    reference: str | None = "rtsp://camera/1",
    account_id: str = ACCOUNT,
    **fields: Any,
) -> Json:
    """The smallest valid v1 create/replace body, plus ``fields`` (top-level keys)."""
    data: Json = {"type": source}
    if reference is not None:
        data["reference"] = reference
    body: Json = {
        "account_id": account_id,
        "data": data,
        "event_handler": {
            "bestshot_handler": {"handler_id": HANDLER_ID},
            "authorization": {"token": TOKEN},
        },
    }
    body.update(copy.deepcopy(fields))
    return body


def analytics_item(**fields: Any) -> Json:
    """The smallest valid v2 analytics item, plus ``fields``."""
    item: Json = {
        "event_handler": {"handler_id": HANDLER_ID, "authorization": {"token": TOKEN}},
    }
    item.update(copy.deepcopy(fields))
    return item


def v2_body(
    *,
    source: str = "tcp",
    reference: str | None = "rtsp://camera/1",
    account_id: str = ACCOUNT,
    analytics: list[Json] | None = None,
    **fields: Any,
) -> Json:
    """The smallest valid v2 create/replace body, plus ``fields`` (top-level keys)."""
    data: Json = {"type": source, "analytics": analytics or [analytics_item()]}
    if reference is not None:
        data["reference"] = reference
    body: Json = {"account_id": account_id, "data": data}
    body.update(copy.deepcopy(fields))
    return body


def body_for(version: int, **kwargs: Any) -> Json:
    return v1_body(**kwargs) if version == 1 else v2_body(**kwargs)


# --- HTTP helpers ------------------------------------------------------------------------


async def create_stream(client: Client, body: Json, version: int = 1) -> str:
    resp = await client.post(f"/{version}/streams", json=body)
    answer = await resp.json()
    assert resp.status == 201, answer
    assert answer["version"] == 1
    stream_id: str = answer["stream_id"]
    return stream_id


async def create_pending(client: Client, **fields: Any) -> str:
    """Create ``v1_body(**fields)`` (a pending stream unless ``fields`` say otherwise)."""
    return await create_stream(client, v1_body(**fields))


async def get_stream(
    client: Client, stream_id: str, version: int = 1, account_id: str | None = None
) -> Json:
    params = {"account_id": account_id} if account_id else {}
    resp = await client.get(f"/{version}/streams/{stream_id}", params=params)
    answer: Json = await resp.json()
    assert resp.status == 200, answer
    return answer


async def list_ids(client: Client, version: int = 1, params: Any = None) -> list[str]:
    """Ids of ``GET /{version}/streams`` (``params``: a dict or a list of pairs)."""
    resp = await client.get(f"/{version}/streams", params=params or {})
    answer = await resp.json()
    assert resp.status == 200, answer
    assert set(answer) == {"streams"}
    return [stream["stream_id"] for stream in answer["streams"]]


async def count(client: Client, version: int = 1, params: Any = None) -> int:
    resp = await client.get(f"/{version}/streams/count", params=params or {})
    answer = await resp.json()
    assert resp.status == 200, answer
    assert set(answer) == {"streams_count"}
    value: int = answer["streams_count"]
    return value


async def patch_status(client: Client, stream_id: str, status: str) -> None:
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": status})
    assert resp.status == 204, await resp.text()


async def send_feedback(client: Client, *items: Json) -> Json:
    """``POST /1/streams/processing/feedback`` with ``items``: its answer (a 200)."""
    resp = await client.post("/1/streams/processing/feedback", json={"streams": list(items)})
    answer: Json = await resp.json()
    assert resp.status == 200, answer
    return answer


def worker_report(stream_id: str, status: str = "in_progress", **fields: Any) -> Json:
    """A feedback item as the queue worker hands it to ``apply_feedback``: every field there,
    the optional ones ``None`` unless given."""
    return {
        "stream_id": stream_id,
        "status": status,
        "version": 1,
        "error": None,
        "video_info": None,
        "preview": None,
    } | fields


def short_periods(settings: Settings, **update: Any) -> Settings:
    """The settings with the periodic jobs (reconciler, change sweep, autorestart sweep,
    downgrade check) every second and a 5 s shutdown; the downgrade far away (streams wait,
    not taken back) unless ``update`` brings it nearer."""
    return settings.model_copy(
        update={
            "autorestart_sweep_interval": 1.0,
            "reconcile_interval": 1.0,
            "change_sweep_interval": 1.0,
            "stream_status_obsoleting_interval": 1.0,
            "stream_status_obsoleting_period": 120.0,
            "shutdown_timeout": 5.0,
            **update,
        }
    )


async def claim(
    client: Client, filters: Json | None = None, limit: int = 10, version: int = 1
) -> list[Json]:
    """The streams ``POST /{version}/streams/processing/queue`` hands out."""
    resp = await client.post(
        f"/{version}/streams/processing/queue", json={"filters": filters or {}, "limit": limit}
    )
    answer = await resp.json()
    assert resp.status == 200, answer
    assert set(answer) == {"streams"}
    streams: list[Json] = answer["streams"]
    return streams


async def claim_ids(
    client: Client, filters: Json | None = None, limit: int = 10, version: int = 1
) -> list[str]:
    return [stream["stream_id"] for stream in await claim(client, filters, limit, version)]


async def claimed_streams(client: Client, count: int, version: int = 1) -> list[str]:
    """``count`` streams named ``s0``, ``s1``..., created then claimed (in that order)."""
    ids = [
        await create_stream(client, body_for(version, name=f"s{i}"), version) for i in range(count)
    ]
    assert await claim_ids(client, {}, count, version) == ids
    return ids


async def create_group(
    client: Client, group_name: str, account_id: str = ACCOUNT, version: int = 1
) -> str:
    resp = await client.post(
        f"/{version}/groups", json={"account_id": account_id, "group_name": group_name}
    )
    answer = await resp.json()
    assert resp.status == 201, answer
    assert answer["group_name"] == group_name
    group_id: str = answer["group_id"]
    return group_id


async def link(
    client: Client, action: str, group_id: str, stream_ids: list[str], **query: str
) -> ClientResponse:
    """``PATCH /1/linker``: attach or detach streams."""
    body = {"action": action, "group_id": group_id, "stream_ids": stream_ids}
    return await client.patch("/1/linker", params=query, json=body)


async def expect_error(
    resp: ClientResponse, status: int, code: int, detail: str | None = None
) -> Json:
    """Assert a LUNA error body with this HTTP status and code (and detail, if given)."""
    body: Json = await resp.json()
    assert (resp.status, body.get("error_code")) == (status, code), body
    assert set(body) >= {"error_code", "desc", "detail"}
    if detail is not None:
        assert body["detail"] == detail, body["detail"]
    return body


def bad_json_detail(path: str, message: str) -> str:
    return f"Failed to validate input json. Path: '{path}', message: '{message}'"


async def queue_depth(settings: Settings, name: str) -> int:
    """Ready messages in a queue (passive declare: the queue must exist)."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        message_count = queue.declaration_result.message_count
        assert message_count is not None  # a passive declare always counts
        return int(message_count)


async def snapshot(database: Database) -> dict[str, list[Json]]:
    """Every document of the collections the API writes, to prove nothing changed."""
    return {
        "streams": await database.streams.find({}).sort("_id", 1).to_list(),
        "groups": await database.groups.find({}).sort("_id", 1).to_list(),
        "stream_logs": await database.stream_logs.find({}).sort("_id", 1).to_list(),
        "webhooks": await database.webhooks.find({}).sort("_id", 1).to_list(),
    }


async def stream_log(database: Database, stream_id: str) -> list[Json]:
    """A stream's log rows, oldest first.

    The rows of one change (``restart`` then ``pending``) share their ``log_time``; among
    them the order is the server's natural one, which is the order they were inserted in."""
    rows = await database.stream_logs.find({"stream_id": stream_id}).to_list()
    rows.sort(key=lambda row: row["log_time"])  # stable: ties keep the natural order
    return rows


async def log_rows(database: Database, stream_id: str) -> list[tuple[str, int]]:
    """``(status, version)`` of a stream's log rows, oldest first (:func:`stream_log`)."""
    return [(row["status"], row["version"]) for row in await stream_log(database, stream_id)]


async def log_statuses(database: Database, stream_id: str) -> list[str]:
    """The statuses of a stream's log rows, oldest first (:func:`stream_log`)."""
    return [row["status"] for row in await stream_log(database, stream_id)]


async def set_fields(database: Database, stream_id: str, **fields: Any) -> None:
    """Change a stored stream behind the API's back (as an agent or a worker would)."""
    result = await database.streams.update_one({"_id": stream_id}, {"$set": fields})
    assert result.matched_count == 1


# --- the complete effective settings of the smallest bodies ---------------------------------

FULL_FRAME: Json = {"x": 0, "y": 0, "width": 0, "height": 0, "mode": "abs"}
PRIMARY_TRACK_DEFAULTS: Json = {
    "use_primary_track_policy": False,
    "best_shot_min_size": 70,
    "best_shot_proper_size": 140,
}
HEALTHCHECK_DEFAULTS: Json = {
    "max_error_count": 10,
    "period": 3600,
    "retry_delay": 5,
    "timeout": 2147483647,
}
SHARED_FILTERING_DEFAULTS: Json = {
    "detection_yaw_threshold": 40,
    "detection_pitch_threshold": 40,
    "detection_roll_threshold": 30,
    "yaw_number": 1,
    "yaw_collection_mode": False,
    "mouth_occlusion_threshold": 0,
    "min_body_size_threshold": 0,
}
SHARED_LIVENESS_DEFAULTS: Json = {
    "use_mask_liveness_filtration": False,
    "use_flying_faces_liveness_filtration": False,
    "liveness_mode": 0,
    "number_of_liveness_checks": 10,
    "liveness_threshold": 0.6,
    "mask_backgrounds_count": 300,
}
LOCATION_DEFAULTS: Json = dict.fromkeys(
    ("city", "area", "district", "street", "house_number", "geo_position")
)
AUTORESTART_DEFAULTS: Json = {
    "restart": 0,
    "attempt_count": 10,
    "delay": 60,
    "current_attempt": 0,
    "last_attempt_time": None,
    "status": "disabled",
}
LIVE_SOURCE_DEFAULTS: Json = {"preferred_program_stream_frame_width": 800, "endless": True}
DATA_POLICY_DEFAULTS: Json = {
    "frame_processing_mode": "auto",
    "real_time_mode_fps": 0,
    "ffmpeg_threads_number": 0,
}

V1_SENDING_DEFAULTS: Json = {
    "time_period_of_searching": -1,
    "silent_period": 0,
    "type": "sec",
    "number_of_bestshots_to_send": 1,
    "send_only_full_set": True,
    "delete_track_after_sending": False,
}
#: GET of ``v1_body()``: data, event_handler and policies
V1_SETTINGS_DEFAULTS: Json = {
    "data": {
        "type": "tcp",
        "reference": "rtsp://camera/1",
        "roi": FULL_FRAME,
        "droi": FULL_FRAME,
        "rotation": 0,
        **LIVE_SOURCE_DEFAULTS,
    },
    "event_handler": {
        "origin": "http://127.0.0.1:5000",
        "api_version": 6,
        "bestshot_handler": {"handler_id": HANDLER_ID},
        "detection_handler": None,
        "frame_store": None,
        "authorization": {"token": TOKEN},
    },
    "policies": {
        "sending": V1_SENDING_DEFAULTS,
        "primary_track_policy": PRIMARY_TRACK_DEFAULTS,
        "liveness": {
            "use_shoulders_liveness_filtration": False,
            **SHARED_LIVENESS_DEFAULTS,
            "livenesses_weights": [0.05, 0.45, 0.5],
        },
        "filtering": {"min_score": 0.5187, **SHARED_FILTERING_DEFAULTS},
        **DATA_POLICY_DEFAULTS,
        "healthcheck": HEALTHCHECK_DEFAULTS,
    },
}

#: GET of ``v2_body()``: data
V2_SETTINGS_DEFAULTS: Json = {
    "data": {
        "type": "tcp",
        "reference": "rtsp://camera/1",
        "roi": FULL_FRAME,
        "rotation": 0,
        **DATA_POLICY_DEFAULTS,
        **LIVE_SOURCE_DEFAULTS,
        "analytics": [
            {
                "mode": 1,
                "enabled": True,
                "droi": FULL_FRAME,
                "filtering": {
                    "min_score_face": 0.5187,
                    "min_score_body": 0.5,
                    **SHARED_FILTERING_DEFAULTS,
                },
                "liveness": {**SHARED_LIVENESS_DEFAULTS, "livenesses_weights": [0.45, 0.5]},
                "primary_track_policy": PRIMARY_TRACK_DEFAULTS,
                "sending": {
                    "time_period_of_searching": -1,
                    "silent_period": 0,
                    "type": "sec",
                    "full_frame_settings": 1,
                    "bestshot_settings": {
                        "type": 1,
                        "face_bestshots_to_send": 1,
                        "body_bestshots_to_send": 1,
                    },
                    "body": {"send_only_full_set": True, "delete_track_after_sending": False},
                },
                "event_handler": {
                    "type": "luna_handler",
                    "handler_id": HANDLER_ID,
                    "authorization": {"token": TOKEN},
                },
                "healthcheck": HEALTHCHECK_DEFAULTS,
            }
        ],
    }
}

STREAM_KEYS_V2 = {
    "stream_id",
    "account_id",
    "name",
    "description",
    "data",
    "location",
    "autorestart",
    "version",
    "create_time",
    "status",
    "last_error",
    "video_info",
    "groups",
    "preview",
}
STREAM_KEYS_V1 = STREAM_KEYS_V2 | {"event_handler", "policies"}


def assert_contains(given: Any, got: Any, path: str = "") -> None:
    """Every value of ``given`` is in ``got`` at the same place, unchanged (kind included:
    ``40`` stays an integer, ``0.5`` a float, ``true`` a boolean)."""
    if isinstance(given, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not an object"
        for key, value in given.items():
            assert key in got, f"{path}.{key} is missing"
            assert_contains(value, got[key], f"{path}.{key}")
    elif isinstance(given, list):
        assert isinstance(got, list) and len(got) == len(given), f"{path}: {got!r}"
        for index, (one, other) in enumerate(zip(given, got, strict=True)):
            assert_contains(one, other, f"{path}.{index}")
    else:
        assert (type(got), got) == (type(given), given), f"{path}: {given!r} became {got!r}"
