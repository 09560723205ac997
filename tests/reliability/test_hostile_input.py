"""Hostile input (design.md, invariant 5): every bad request gets a 4xx with the LUNA error
body and the right code, never a 5xx, and writes nothing.

The routes come from the operation table (every route with a body, with a page, with an id in
its path), so a new route is attacked without touching this file; its valid body must be
registered in ``VALID_BODIES`` (a test fails until it is).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import Operation, all_operations
from gateway.app import APIS, create_app
from shared.core.settings import Settings
from shared.domain.request_id import HEADER, is_valid_request_id
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    Json,
    create_group,
    create_stream,
    seed_example,
    snapshot,
    v1_body,
    v2_body,
)
from tests.reliability.conftest import Client

OPERATIONS = all_operations(APIS)
BODY_OPERATIONS = [op for op in OPERATIONS if op.body is not None]
PAGED_OPERATIONS = [
    op for op in OPERATIONS if op.query is not None and "page" in op.query.model_fields
]
ID_OPERATIONS = [op for op in OPERATIONS if re.search(r"{\w+_id}", op.path)]
ERROR_KEYS = {"error_code", "desc", "detail", "link"}
JSON_TYPE = {"Content-Type": "application/json"}
VALID_ID = "1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a"
UNKNOWN = "unknown_field"


def _without_group(name: str) -> Json:
    """A seed stream body without its ``group_name`` (no such group exists here)."""
    body: Json = seed_example(name)
    del body["group_name"]
    return body


#: a valid body of every route that takes one (keyed by the operation's body model)
VALID_BODIES: dict[str, Any] = {
    "StreamCreateV1": lambda: _without_group("v1_create_tcp"),
    "StreamCreateV2": lambda: _without_group("v2_create_tcp"),
    "StreamPatch": lambda: seed_example("v1_patch"),
    "StreamsDeleteRequest": lambda: seed_example("v1_delete_streams"),
    "GroupCreate": lambda: seed_example("group_create"),
    "GroupPatch": lambda: seed_example("group_patch"),
    "LinkerRequest": lambda: seed_example("linker"),
    "QueueClaimRequest": lambda: seed_example("v1_queue_claim"),
    "FeedbackRequest": lambda: seed_example("v1_feedback"),
    "SessionRequest": lambda: {"token": "lst_" + "A" * 43},
    "TokenCreate": lambda: {"role": "viewer", "name": "hostile"},
    "WebhookCreate": lambda: {
        "account_id": ACCOUNT,
        "url": "https://1.1.1.1/hook",  # public, never called: no worker runs here
        "events": ["failure"],
    },
    "BulkStatus": lambda: {"status": "pause"},
}


@dataclass(frozen=True)
class Targets:
    """Existing objects, so that a refused change has something it could have changed."""

    stream_v1: str
    stream_v2: str
    group: str
    webhook: str

    def url(self, op: Operation, **ids: str) -> str:
        version = op.path.split("/")[1]
        default = {
            "stream_id": self.stream_v1 if version == "1" else self.stream_v2,
            "group_id": self.group,
            "webhook_id": self.webhook,
        }
        return op.path.format(**(default | ids))


@pytest_asyncio.fixture(scope="module")
async def targets(module_client: Client) -> Targets:
    return Targets(
        stream_v1=await create_stream(module_client, v1_body(), 1),
        stream_v2=await create_stream(module_client, v2_body(), 2),
        group=await create_group(module_client, "hostile-target"),
        webhook=await create_webhook(module_client),
    )


async def create_webhook(client: Client) -> str:
    resp = await client.post("/1/webhooks", json=VALID_BODIES["WebhookCreate"]())
    assert resp.status == 201, await resp.text()
    webhook_id: str = (await resp.json())["webhook_id"]
    return webhook_id


@pytest_asyncio.fixture
async def unchanged(module_database: Database, targets: Targets) -> AsyncIterator[None]:
    """The test writes nothing: every stream, group and log row is the same afterwards."""
    before = await snapshot(module_database)
    yield
    after = await snapshot(module_database)
    assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
    assert after == before


def valid_body(op: Operation) -> Any:
    assert op.body is not None
    return VALID_BODIES[op.body.__name__]()


async def expect(
    resp: aiohttp.ClientResponse, status: int, code: int, what: str = ""
) -> dict[str, Any]:
    """A LUNA error body with this status and code, and a valid request id header."""
    text = await resp.text()
    assert resp.content_type == "application/json", (what, resp.status, text[:300])
    body: dict[str, Any] = json.loads(text)
    assert (resp.status, body.get("error_code")) == (status, code), (what, body)
    assert set(body) == ERROR_KEYS, (what, body)
    assert all(isinstance(body[key], str) for key in ("desc", "detail", "link")), body
    assert is_valid_request_id(resp.headers[HEADER]), resp.headers[HEADER]
    return body


async def send_raw(client: Client, op: Operation, targets: Targets, body: bytes) -> Any:
    return await client.request(op.method, targets.url(op), data=body, headers=JSON_TYPE)


def test_every_body_route_has_a_valid_body() -> None:
    assert {op.body.__name__ for op in BODY_OPERATIONS if op.body} == set(VALID_BODIES)


# --- body size --------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def small_limit_client(module_settings: Settings) -> AsyncIterator[Client]:
    settings = module_settings.model_copy(update={"max_body_size": 2048})
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


def padded(body: Json, size: int) -> bytes:
    """``body`` as JSON, padded with (valid) whitespace to ``size`` bytes (at least)."""
    raw = json.dumps(body).encode()
    return raw[:-1] + b" " * max(0, size - len(raw)) + b"}"


@pytest.mark.usefixtures("unchanged")
async def test_body_over_the_size_limit(small_limit_client: Client, targets: Targets) -> None:
    for op in BODY_OPERATIONS:
        for size in (2049, 4096, 1024 * 1024):
            resp = await send_raw(small_limit_client, op, targets, padded(valid_body(op), size))
            body = await expect(resp, 413, 12028, f"{op.route_label} {size}")
            assert "2048" in body["detail"]


@pytest.mark.usefixtures("unchanged")
async def test_chunked_body_over_the_size_limit(
    small_limit_client: Client, targets: Targets
) -> None:
    """No Content-Length: the limit holds while reading."""

    async def chunks() -> AsyncIterator[bytes]:
        raw = padded(v1_body(), 64 * 1024)
        for start in range(0, len(raw), 1024):
            yield raw[start : start + 1024]

    resp = await small_limit_client.post("/1/streams", data=chunks(), headers=JSON_TYPE)
    await expect(resp, 413, 12028)


async def test_body_at_the_size_limit_is_taken(small_limit_client: Client) -> None:
    """The control: the same body, padded to exactly the limit, creates the stream."""
    resp = await small_limit_client.post(
        "/1/streams", data=padded(v1_body(), 2048), headers=JSON_TYPE
    )
    assert resp.status == 201, await resp.text()


# --- broken JSON ------------------------------------------------------------------------------

BROKEN_JSON: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"  \n\t ",
    "deep array": b"[" * 100_000,
    "deep array, closed": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep value in a body": b'{"description": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "invalid utf-8": b'{"description": "\xff\xfe"}',
    "overlong utf-8": b'{"description": "\xc0\xaf"}',
    "truncated utf-8": b'{"description": "\xe2\x82"}',
    "latin-1": '{"description": "café"}'.encode("latin-1"),
    "utf-16": '{"description": "x"}'.encode("utf-16"),
    "utf-8 bom": b'\xef\xbb\xbf{"description": "x"}',
    "lone high surrogate": b'{"description": "\\ud800"}',
    "lone low surrogate": b'{"description": "\\udfff"}',
    "reversed pair": b'{"description": "\\udc00\\ud800"}',
    "surrogate in a key": b'{"\\ud800": 1}',
    "NaN": b'{"limit": NaN}',
    "Infinity": b'{"limit": Infinity}',
    "-Infinity": b'{"limit": -Infinity}',
    "NaN deep inside": b'{"a": [1, {"b": [NaN]}]}',
    "trailing garbage": b'{"description": "x"} x',
    "two documents": b"{}{}",
    "single quotes": b"{'description': 'x'}",
    "trailing comma": b'{"description": "x",}',
    "unterminated": b'{"description": "x"',
    "nul byte": b'{"description": "x"}\x00',
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", list(BROKEN_JSON))
async def test_broken_json(module_client: Client, targets: Targets, name: str) -> None:
    for op in BODY_OPERATIONS:
        resp = await send_raw(module_client, op, targets, BROKEN_JSON[name])
        await expect(resp, 400, 12027, op.route_label)


NOT_AN_OBJECT: dict[str, bytes] = {
    "array": b"[]",
    "array of an object": b'[{"description": "x"}]',
    "string": b'"x"',
    "null": b"null",
    "integer": b"1",
    "float": b"1.5",
    "true": b"true",
}


@pytest.mark.usefixtures("unchanged")
async def test_json_that_is_not_an_object(module_client: Client, targets: Targets) -> None:
    for op in BODY_OPERATIONS:
        for name, value in NOT_AN_OBJECT.items():
            resp = await send_raw(module_client, op, targets, value)
            body = await expect(resp, 400, 12022, f"{op.route_label} {name}")
            assert body["detail"].startswith("Failed to validate input json. Path: ''"), body


# --- content types ----------------------------------------------------------------------------


def wrong_content_types(raw: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "text/plain", {"data": raw, "headers": {"Content-Type": "text/plain"}}
    yield "missing", {"data": raw, "skip_auto_headers": ["Content-Type"]}
    yield "octet-stream", {"data": raw, "headers": {"Content-Type": "application/octet-stream"}}
    yield "xml", {"data": raw, "headers": {"Content-Type": "application/xml"}}
    yield "json-patch", {"data": raw, "headers": {"Content-Type": "application/json-patch+json"}}
    yield "form", {"data": {"body": raw.decode()}}
    form = aiohttp.FormData()
    form.add_field("file", raw, filename="body.json", content_type="application/json")
    yield "multipart", {"data": form}


@pytest.mark.usefixtures("unchanged")
async def test_wrong_content_type(module_client: Client, targets: Targets) -> None:
    for op in BODY_OPERATIONS:
        raw = json.dumps(valid_body(op)).encode()
        for name, kwargs in wrong_content_types(raw):
            resp = await module_client.request(op.method, targets.url(op), **kwargs)
            body = await expect(resp, 415, 12023, f"{op.route_label} {name}")
            assert "application/json" in body["detail"]


# --- numbers out of range, unknown fields -----------------------------------------------------


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def objects(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every JSON object in ``value``, the top level included."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from objects(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(item, (*path, index))


def replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def json_path(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)


HUGE: dict[str, bytes] = {
    "10**40": b"1" + b"0" * 40,
    "-10**40": b"-1" + b"0" * 40,
    "1e400": b"1e400",
    "-1e400": b"-1e400",
    "2**63": b"9223372036854775808",
}


@pytest.mark.usefixtures("unchanged")
async def test_huge_numbers_in_numeric_fields(module_client: Client, targets: Targets) -> None:
    """Every number of every valid body, replaced by one no field takes (nor MongoDB)."""
    marker = "__HUGE__"
    tried = 0
    for op in BODY_OPERATIONS:
        body = valid_body(op)
        numeric = [
            path
            for path, value in leaves(body)
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        for path in numeric:
            template = json.dumps(replaced(body, path, marker)).encode()
            for name, number in HUGE.items():
                raw = template.replace(f'"{marker}"'.encode(), number)
                resp = await send_raw(module_client, op, targets, raw)
                what = f"{op.route_label} {json_path(path)}={name}"
                answer = await expect(resp, 400, 12022, what)
                assert f"Path: '{json_path(path)}'" in answer["detail"], (what, answer)
                tried += 1
    assert tried > 100


@pytest.mark.usefixtures("unchanged")
async def test_unknown_fields_at_every_level(module_client: Client, targets: Targets) -> None:
    tried = 0
    for op in BODY_OPERATIONS:
        body = valid_body(op)
        for path in objects(body):
            node = body
            for key in path:
                node = node[key]
            extended = replaced(body, path, {**node, UNKNOWN: 1}) if path else {**body, UNKNOWN: 1}
            resp = await module_client.request(op.method, targets.url(op), json=extended)
            what = f"{op.route_label} at '{json_path(path)}'"
            answer = await expect(resp, 400, 12022, what)
            expected = (
                f"Failed to validate input json. Path: '{json_path(path)}', message: "
                f"'Additional properties are not allowed ('{UNKNOWN}' was unexpected)'"
            )
            assert answer["detail"] == expected, what
            tried += 1
    assert tried > 50


# --- query parameters -------------------------------------------------------------------------

BAD_PAGES: list[tuple[str, str, str]] = [
    ("page=1&page=2", "page", "repeated"),
    ("page_size=10&page_size=20", "page_size", "repeated"),
    ("page=0", "page", "zero"),
    ("page=-1", "page", "negative"),
    ("page=abc", "page", "not a number"),
    ("page=1.5", "page", "not an integer"),
    ("page=", "page", "empty"),
    ("page=%00", "page", "nul"),
    ("page=%EF%BC%91", "page", "full-width digit"),
    ("page_size=0", "page_size", "zero"),
    ("page_size=100000", "page_size", "over the maximum"),
    ("page_size=" + "1" + "0" * 40, "page_size", "10**40"),
    ("page=0&page_size=100000", "page", "both bad"),
]


@pytest.mark.parametrize(("query", "name", "why"), BAD_PAGES, ids=[b[2] for b in BAD_PAGES])
async def test_bad_paging(
    module_client: Client, targets: Targets, query: str, name: str, why: str
) -> None:
    for op in PAGED_OPERATIONS:
        resp = await module_client.get(f"{targets.url(op)}?{query}")
        answer = await expect(resp, 400, 12012, f"{op.route_label}?{query}")
        assert answer["detail"] == f"Bad query parameters '{name}'", answer


async def test_pages_past_the_end(module_client: Client, targets: Targets) -> None:
    """Past the last page: 200 and an empty list (however far)."""
    empty = {
        "/1/streams": {"streams": []},
        "/2/streams": {"streams": []},
        "/1/groups": [],
        "/2/groups": [],
        "/1/streams/logs": {"logs": []},
        "/2/streams/logs": {"logs": []},
        "/1/audit": {"entries": []},
        "/2/audit": {"entries": []},
        "/1/webhooks": {"webhooks": []},
        "/2/webhooks": {"webhooks": []},
        "/1/webhooks/{webhook_id}/deliveries": {"deliveries": []},
        "/2/webhooks/{webhook_id}/deliveries": {"deliveries": []},
    }
    assert {op.path for op in PAGED_OPERATIONS} == set(empty)
    for op in PAGED_OPERATIONS:
        for query in ("page=2&page_size=1000", "page=1000000", "page=" + "1" + "0" * 40):
            resp = await module_client.get(f"{targets.url(op)}?{query}")
            assert resp.status == 200, (op.route_label, query, await resp.text())
            assert await resp.json() == empty[op.path], (op.route_label, query)


async def test_longest_documented_query_is_served(module_client: Client) -> None:
    """1000 stream ids (the documented maximum), comma-separated: about 37 KB of URL."""
    ids = ",".join(str(uuid.UUID(int=n)) for n in range(1000))
    for op in PAGED_OPERATIONS:
        if op.query is not None and "stream_ids" in op.query.model_fields:
            resp = await module_client.get(op.path, params={"stream_ids": ids})
            assert resp.status == 200, (op.route_label, (await resp.text())[:200])


@pytest.mark.usefixtures("unchanged")
async def test_repeated_account_id_changes_nothing(module_client: Client, targets: Targets) -> None:
    """A scalar given twice is refused before anything happens (here: deletes)."""
    twice = f"account_id={ACCOUNT}&account_id={ACCOUNT}"
    for url in (
        f"/1/streams/{targets.stream_v1}",
        f"/2/streams/{targets.stream_v2}",
        f"/1/groups/{targets.group}",
    ):
        resp = await module_client.delete(f"{url}?{twice}")
        await expect(resp, 400, 12012, url)
    resp = await module_client.request(
        "DELETE", f"/1/streams?{twice}", json={"stream_ids": [targets.stream_v1]}
    )
    await expect(resp, 400, 12012)


@pytest.mark.usefixtures("unchanged")
async def test_bad_account_id_query(module_client: Client, targets: Targets) -> None:
    for value in ("abc", ACCOUNT.upper(), ACCOUNT + "0", "", "%00"):
        resp = await module_client.delete(f"/1/streams/{targets.stream_v1}?account_id={value}")
        answer = await expect(resp, 400, 12012, value)
        assert answer["detail"] == "Bad query parameters 'account_id'"


# --- path ids ---------------------------------------------------------------------------------

#: bad path ids and their error: 12030 names the bad id, 12013 (the router matched no route)
BAD_IDS: dict[str, int] = {
    "abc": 12030,
    "8B8B5937-2E9C-4E8B-A7A7-5CAF86621B5A": 12030,
    "8b8b59372e9c4e8ba7a75caf86621b5a": 12030,
    "8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a0": 12030,
    "8b8b5937-2e9c-4e8b-a7a7-5caf86621b5g": 12030,
    "%208b8b5937-2e9c-4e8b-a7a7-5caf86621b5a": 12030,
    "%00": 12030,
    "%C3%BC": 12030,
    "%0d%0a": 12030,
    "..": 12013,
    "a" * 1000: 12030,
    "{8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a}": 12013,
}


@pytest.mark.usefixtures("unchanged")
async def test_non_uuid_path_ids(module_client: Client, targets: Targets) -> None:
    for op in ID_OPERATIONS:
        kwargs: dict[str, Any] = {"params": {"account_id": ACCOUNT}} if op.query else {}
        if op.body is not None:
            kwargs["json"] = valid_body(op)
        for bad, code in BAD_IDS.items():
            ids = dict.fromkeys(re.findall(r"{(\w+_id)}", op.path), bad)
            resp = await module_client.request(op.method, targets.url(op, **ids), **kwargs)
            answer = await expect(resp, 404, code, f"{op.route_label} {bad[:20]}")
            if code == 12030:
                assert "expected a lowercase uuid" in answer["detail"]
                assert len(answer["detail"]) < 200


# --- Luna-Request-Id --------------------------------------------------------------------------


async def raw_request(client: Client, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as the request's bytes; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1]), headers, body


BAD_REQUEST_IDS: dict[str, bytes] = {
    "crlf, encoded": VALID_ID.encode() + b"%0d%0aSet-Cookie: evil=1",
    "cr, escaped": VALID_ID.encode() + b"\\r\\nSet-Cookie: evil=1",
    "very long": b"1536751345," + b"8" * 6000,
    "longer than aiohttp's default field limit": b"1536751345," + b"8" * 9000,
    "unicode": "1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5ä".encode(),
    "unicode digits": "١٥٣٦٧٥١٣٤٥,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a".encode(),
    "latin-1 byte": VALID_ID.encode()[:-1] + b"\xe4",
    "uppercase uuid": VALID_ID.upper().encode(),
    "two ids": VALID_ID.encode() + b"," + VALID_ID.encode(),
    "html": b"<script>alert(1)</script>",
    "empty": b"",
    "tab inside": b"1536751345,\t8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a",
}
#: header values the HTTP parser refuses before the app sees them (raw CR, LF, NUL, folding,
#: over the app's 64 KiB field limit): aiohttp answers a plain 400 itself, no middleware runs
MALFORMED_REQUEST_IDS: dict[str, bytes] = {
    "crlf, folded": b"1536751345,\r\n 8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a",
    "bare lf": VALID_ID.encode() + b"\nSet-Cookie: evil=1",
    "bare cr": VALID_ID.encode() + b"\rSet-Cookie: evil=1",
    "nul": VALID_ID.encode() + b"\x00",
}


def patch_with_request_id(targets: Targets, value: bytes) -> bytes:
    """A valid PATCH of a stream's description, with ``value`` as its request id."""
    body = json.dumps({"description": "changed"}).encode()
    return (
        (
            f"PATCH /1/streams/{targets.stream_v1} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        + HEADER.encode()
        + b": "
        + value
        + b"\r\n\r\n"
        + body
    )


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", list(BAD_REQUEST_IDS))
async def test_bad_request_id_is_refused_and_not_echoed(
    module_client: Client, targets: Targets, name: str
) -> None:
    value = BAD_REQUEST_IDS[name]
    status, headers, answer = await raw_request(
        module_client, patch_with_request_id(targets, value)
    )
    error = json.loads(answer)
    assert (status, error["error_code"]) == (400, 12029), (name, error)
    assert set(error) == ERROR_KEYS
    echoed = headers[HEADER.lower()]
    assert is_valid_request_id(echoed), echoed
    assert echoed.encode() != value
    assert "set-cookie" not in headers
    assert b"evil" not in answer
    assert b"<script>" not in answer


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", list(MALFORMED_REQUEST_IDS))
async def test_malformed_request_id_header_is_refused(
    module_client: Client, targets: Targets, name: str
) -> None:
    """Not HTTP: refused by aiohttp's parser with a plain 400, before any middleware (so
    without the LUNA body; the parser quotes the bad line in its text/plain message). No
    header carries the value back, nothing is written."""
    value = MALFORMED_REQUEST_IDS[name]
    status, headers, answer = await raw_request(
        module_client, patch_with_request_id(targets, value)
    )
    assert status == 400, (name, answer[:200])
    assert headers["content-type"].startswith("text/plain")
    assert HEADER.lower() not in headers
    assert "set-cookie" not in headers
