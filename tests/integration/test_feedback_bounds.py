"""Every string an agent writes with its feedback, and the size of a batch, is bounded.

A hostile agent once sent 64 reports with a 3.5 MB ``error`` each: all accepted, the
gateway's memory grew by 491 MiB and a page of those streams weighed 224 MB. Each bound
below is one a real agent never reaches; past it the batch is a 12022 naming the field,
quoting at most a short head of the value, and nothing is written.
"""

from __future__ import annotations

from typing import Any

import pytest

from queue_worker.worker import FeedbackWorker
from shared.domain.models.common import DATE_TIME_MAX_LENGTH, ERROR_MAX_LENGTH, URL_MAX_LENGTH
from shared.domain.models.feedback import FEEDBACK_MAX_ITEMS
from shared.store.mongo import Database
from tests.integration.factories import (
    VIDEO_INFO,
    Client,
    claim_ids,
    create_stream,
    get_stream,
    snapshot,
    v1_body,
)

Json = dict[str, Any]
#: the longest detail a refusal may have: the message quotes a short head of the value
DETAIL_MAX = 400


def report(stream_id: str, **fields: Any) -> Json:
    return {"stream_id": stream_id, "status": "in_progress", "version": 1} | fields


async def claimed_stream(client: Client) -> str:
    stream_id = await create_stream(client, v1_body(name="cam"))
    assert await claim_ids(client, {}, 1) == [stream_id]
    return stream_id


def url(length: int) -> str:
    head = "http://127.0.0.1:34569/"
    return head + "p" * (length - len(head))


def oversized(stream_id: str) -> list[tuple[Json, str, str]]:
    """(item, path, message start) of each field one past its bound."""
    start_time = "2024-03-01T10:00:00." + "0" * (DATE_TIME_MAX_LENGTH - 20) + "Z"
    return [
        (report(stream_id, error="e" * (ERROR_MAX_LENGTH + 1)), "streams.0.error", "'eee"),
        (report(stream_id, error="e" * 3_500_000), "streams.0.error", "'eee"),
        (
            report(stream_id, preview={"live": {"url": url(URL_MAX_LENGTH + 1)}}),
            "streams.0.preview.live.url",
            "'http://127.0.0.1:34569/ppp",
        ),
        (
            report(stream_id, preview={"last_frame": {"url": url(URL_MAX_LENGTH + 1)}}),
            "streams.0.preview.last_frame.url",
            "'http://127.0.0.1:34569/ppp",
        ),
        (
            report(stream_id, video_info=VIDEO_INFO | {"start_time": start_time}),
            "streams.0.video_info.start_time",
            "'2024-03-01T10:00:00.000",
        ),
    ]


@pytest.mark.parametrize("version", [1, 2])
async def test_strings_past_their_bound_are_refused(
    client: Client, database: Database, version: int
) -> None:
    stream_id = await claimed_stream(client)
    before = await snapshot(database)
    for item, path, head in oversized(stream_id):
        resp = await client.post(
            f"/{version}/streams/processing/feedback", json={"streams": [item]}
        )
        answer = await resp.json()
        assert (resp.status, answer["error_code"]) == (400, 12022), (path, answer)
        detail = answer["detail"]
        assert detail.startswith(f"Failed to validate input json. Path: '{path}', message: "), (
            detail
        )
        assert f"message: '{head}" in detail, detail
        assert "is too long" in detail
        assert len(detail) < DETAIL_MAX, len(detail)
    assert await snapshot(database) == before


async def test_too_many_reports_in_one_batch(client: Client, database: Database) -> None:
    stream_id = await claimed_stream(client)
    before = await snapshot(database)
    items = [report(stream_id)] * (FEEDBACK_MAX_ITEMS + 1)
    resp = await client.post("/1/streams/processing/feedback", json={"streams": items})
    answer = await resp.json()
    assert (resp.status, answer["error_code"]) == (400, 12022), answer
    assert answer["detail"].startswith("Failed to validate input json. Path: 'streams', message: ")
    assert answer["detail"].endswith(
        f"is too long ({FEEDBACK_MAX_ITEMS + 1} items, at most {FEEDBACK_MAX_ITEMS})'"
    )
    assert len(answer["detail"]) < DETAIL_MAX
    assert await snapshot(database) == before


async def test_reports_at_their_bounds_are_applied(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    stream_id = await claimed_stream(client)
    error = "e" * ERROR_MAX_LENGTH
    preview = {"live": {"url": url(URL_MAX_LENGTH)}, "last_frame": {"url": url(URL_MAX_LENGTH)}}
    start_time = "2024-03-01T10:00:00." + "0" * (DATE_TIME_MAX_LENGTH - 21) + "Z"
    assert len(start_time) == DATE_TIME_MAX_LENGTH
    info = VIDEO_INFO | {"start_time": start_time, "duration": None, "progress": None}
    items = [report(stream_id, error=error, preview=preview, video_info=info)]
    items = [report(stream_id, error="warming up")] * (FEEDBACK_MAX_ITEMS - 1) + items
    resp = await client.post("/1/streams/processing/feedback", json={"streams": items})
    answer = await resp.json()
    assert resp.status == 200, answer
    assert len(answer["streams"]["modified"]) == FEEDBACK_MAX_ITEMS
    got = await get_stream(client, stream_id)
    assert (got["last_error"], got["preview"], got["video_info"]) == (error, preview, info)
