"""Where luna-streams used to be stricter than the published reference (issue 13, item 7)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import MAX_REQUEST_LINE
from gateway.keys import DOCS
from tests.integration.factories import create_stream, v1_body

Client = TestClient[Any, Any]

LIST_ROUTES = [
    ("/{v}/streams", "stream_ids"),
    ("/{v}/streams", "names"),
    ("/{v}/streams/count", "stream_ids"),
    ("/{v}/streams/count", "names"),
    ("/{v}/streams/processing/queue?limit=5", "stream_ids"),
    ("/{v}/streams/processing/queue?limit=5", "names"),
    ("/{v}/streams/processing/queue?limit=5", "group_ids"),
    ("/{v}/streams/processing/queue?limit=5", "group_names"),
    ("/{v}/streams/logs", "stream_ids"),
    ("/{v}/groups", "group_ids"),
    ("/{v}/groups", "group_names"),
    ("/{v}/groups/count", "group_names"),
]


def values(name: str, n: int) -> list[str]:
    if name.endswith("_ids"):
        return [str(uuid.UUID(int=i + 1, version=4)) for i in range(n)]
    return [f"n{i}" for i in range(n)]


async def test_list_filters_take_more_than_1000_items(client: Client) -> None:
    stream_id = await create_stream(client, v1_body(name="n2999"))
    for version in (1, 2):
        for path, name in LIST_ROUTES:
            url = path.format(v=version)
            given = values(name, 3000)
            if name == "stream_ids":
                given[-1] = stream_id
            resp = await client.get(url, params={name: ",".join(given)})
            assert resp.status == 200, (url, name, (await resp.text())[:300])
            body = await resp.json()
            if (url.endswith("/streams") or "queue" in url) and name in ("stream_ids", "names"):
                assert [s["stream_id"] for s in body["streams"]] == [stream_id], (url, name)
            if url.endswith("/streams/count") and name in ("stream_ids", "names"):
                assert body == {"streams_count": 1}


async def test_duplicates_count_once(client: Client) -> None:
    stream_id = await create_stream(client, v1_body(name="twice"))
    many = ",".join([stream_id] * 2000)
    resp = await client.get("/1/streams", params={"stream_ids": many})
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [stream_id]
    resp = await client.get(
        "/1/streams/processing/queue", params={"limit": 9, "names": "twice," * 1500}
    )
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [stream_id]


async def test_a_request_line_past_the_bound_is_refused(client: Client) -> None:
    """What bounds a list filter: the request line (``MAX_REQUEST_LINE``), not an item count."""
    ids = ",".join(values("stream_ids", MAX_REQUEST_LINE // 36 + 10))
    resp = await client.get("/1/streams", params={"stream_ids": ids})
    assert 400 <= resp.status < 500


async def test_queue_peek_limit_has_no_upper_bound_of_1000(client: Client) -> None:
    ids = [await create_stream(client, v1_body(name=f"q{i}")) for i in range(3)]
    for version in (1, 2):
        for limit in ("1001", "100000", "2147483647"):
            resp = await client.get(f"/{version}/streams/processing/queue", params={"limit": limit})
            assert resp.status == 200, await resp.text()
            assert [s["stream_id"] for s in (await resp.json())["streams"]] == ids
        resp = await client.get(
            f"/{version}/streams/processing/queue", params={"limit": "2147483648"}
        )
        assert resp.status == 400
        assert (await resp.json())["error_code"] == 12012


def _parameter(client: Client, path: str, method: str, name: str) -> dict[str, Any]:
    app = client.server.app
    assert app is not None
    params = app[DOCS].spec["paths"][path][method]["parameters"]
    (found,) = [p for p in params if p["name"] == name]
    return dict(found)


def _enum(param: dict[str, Any]) -> list[str]:
    schema = param["schema"]
    items = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "array")["items"]
    return list(items["enum"])


async def test_spec_statuses_agree_and_say_why(client: Client) -> None:
    for version in (1, 2):
        streams = _parameter(client, f"/{version}/streams", "get", "statuses")
        logs = _parameter(client, f"/{version}/streams/logs", "get", "statuses")
        assert _enum(streams) == _enum(logs)
        assert {"restart", "handler_lost", "deleted"} <= set(_enum(streams))
        assert "stream_status" in streams["description"]
        assert "match no stream" in streams["description"]


async def test_spec_shows_the_reference_defaults_and_optional_bounds(client: Client) -> None:
    for version in (1, 2):
        targets = _parameter(client, f"/{version}/streams/logs", "get", "targets")
        assert targets["schema"]["default"] == [
            "stream_id", "log_time", "error", "status", "video_info", "version", "preview"
        ]  # fmt: skip
        bound = _parameter(client, f"/{version}/streams/logs", "delete", "log_time__lt")
        assert bound["required"] is False
        limit = _parameter(client, f"/{version}/streams/processing/queue", "get", "limit")
        assert limit["required"] is True
        assert limit["schema"]["maximum"] == 2147483647
        ranges = _parameter(client, f"/{version}/streams", "get", "stream_id__gte")
        assert ranges["schema"]
        assert _parameter(client, f"/{version}/streams", "get", "order")["schema"]["enum"] == [
            "asc",
            "desc",
        ]
        for name in ("stream_ids", "names"):
            assert "maxItems" not in str(_parameter(client, f"/{version}/streams", "get", name))
