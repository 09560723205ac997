"""Access log: one structured line per HTTP request; no ``[None]`` outside a request."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from shared.telemetry.log_setup import JsonFormatter, TextFormatter, _RequestIdFilter

Client = TestClient[Any, Any]
GIVEN_ID = "1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a"


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.access"]


async def test_one_access_line_per_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    walls: list[float] = []  # each request's wall time, seen from the client, in ms
    for path, kwargs in (
        ("/version", {"headers": {"Luna-Request-Id": GIVEN_ID}}),
        ("/1/streams/not-a-uuid?account_id=secret-name", {}),
        ("/docs/dev", {"allow_redirects": False}),
        ("/version", {"headers": {"Luna-Request-Id": "bad"}}),
    ):
        started = time.perf_counter()
        await client.get(path, **kwargs)
        walls.append((time.perf_counter() - started) * 1000)
    records = access_records(caplog)
    assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/version", 200),
        ("GET", "/1/streams/not-a-uuid", 404),
        ("GET", "/docs/dev", 302),
        ("GET", "/version", 400),
    ]
    assert records[0].request_id == GIVEN_ID  # type: ignore[attr-defined]
    for record, wall in zip(records, walls, strict=True):
        duration = record.duration_ms  # type: ignore[attr-defined]
        assert isinstance(duration, float) and f"{duration:.2f} ms" in record.getMessage()
        assert 0 < duration <= wall, (duration, wall)  # the server's part of the round trip
        assert len(record.request_id) == 47  # type: ignore[attr-defined]
        assert "secret-name" not in record.getMessage()  # the query string is not logged


async def test_access_line_as_json(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    await client.post("/1/streams", json={}, headers={"Luna-Request-Id": GIVEN_ID})
    (record,) = access_records(caplog)
    _RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "gateway.access"
    assert line["method"] == "POST"
    assert line["path"] == "/1/streams"
    assert line["status"] == 400
    assert line["request_id"] == GIVEN_ID
    assert isinstance(line["duration_ms"], float)
    assert line["message"].startswith("POST /1/streams 400 ")


def test_text_line_without_request_has_no_brackets() -> None:
    record = logging.LogRecord("luna_streams.worker", logging.INFO, "", 0, "job done", None, None)
    _RequestIdFilter().filter(record)
    text = TextFormatter("log-janitor").format(record)
    assert "[None]" not in text
    assert text.endswith(" INFO log-janitor luna_streams.worker: job done")
    record.request_id = GIVEN_ID
    assert f" INFO gateway [{GIVEN_ID}] luna_streams.worker: " in TextFormatter("gateway").format(
        record
    )


FORGED = "\n2024-01-01 00:00:00,000 INFO gateway [x] gateway.access: GET /1/streams 200 1.00 ms"


async def test_a_client_string_cannot_forge_a_text_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """``%0A`` (and every other control character) in a path stays on its record's line."""
    caplog.set_level(logging.INFO, logger="gateway.access")
    caplog.handler.setFormatter(TextFormatter("gateway"))
    path = "/version" + quote(FORGED + "\r\x1b[2J\u2028end", safe="/")
    resp = await client.get(path, headers={"Luna-Request-Id": GIVEN_ID})
    assert resp.status == 404
    (record,) = access_records(caplog)
    assert record.path == "/version" + FORGED + "\r\x1b[2J\u2028end"  # type: ignore[attr-defined]
    lines = caplog.text.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f" INFO gateway [{GIVEN_ID}] gateway.access: GET /version\\n2024-01-01 00:00:00,000 "
        "INFO gateway [x] gateway.access: GET /1/streams 200 1.00 ms\\r\\x1b[2J\\u2028end "
        f"404 {record.duration_ms:.2f} ms"  # type: ignore[attr-defined]
    )
    # JSON lines were safe already: the same record is one line, and reads back as sent
    _RequestIdFilter().filter(record)
    text = JsonFormatter().format(record)
    assert len(text.splitlines()) == 1
    assert json.loads(text)["path"] == record.path  # type: ignore[attr-defined]


def test_a_traceback_is_indented_under_its_record() -> None:
    """No line of a traceback (its message may carry a client's string) reads as a record."""
    try:
        raise ValueError("bad name" + FORGED + "\r" + FORGED.lstrip("\n"))
    except ValueError:
        record = logging.LogRecord(
            "gateway.errors", logging.ERROR, "", 0, "failed on %s", ("/x\n/y",), sys.exc_info()
        )
    _RequestIdFilter().filter(record)
    head, *rest = TextFormatter("gateway").format(record).splitlines()
    assert head.endswith(" ERROR gateway gateway.errors: failed on /x\\n/y")
    assert rest[0] == "    Traceback (most recent call last):"
    assert len(rest) > 3 and all(line.startswith("    ") for line in rest), rest
