"""A fleet from a cold start: every camera claimed, and its first report, at once.

- a report that keeps a stream ``in_progress`` and changes what it shows (a camera's first
  report: video_info and preview appear) does not rewrite the stream document, which pays
  for every index of ``streams``: it is stored in ``stream_reports``
  (:mod:`shared.store.shown`), and every reader still shows the latest values;
- ``streams`` has no index that no query needs, and the ones earlier versions made go;
- a claim on an empty queue does not wait for deliveries that cannot come, and a claim of
  many is answered in short rounds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from queue_worker.worker import FeedbackWorker
from shared.services.claim_line import CLAIM_ROUND
from shared.store.mongo import INDEXES, OBSOLETE_INDEXES, STREAMS, Database, create_indexes
from shared.store.shown import SHOWN_AT
from tests.integration.factories import (
    Client,
    claim_ids,
    claimed_streams,
    create_stream,
    get_stream,
    patch_status,
    v1_body,
)
from tests.integration.test_feedback import PREVIEW, VIDEO_INFO, entry, feedback

Json = dict[str, Any]
pytestmark = pytest.mark.usefixtures("queue_worker")


def report(stream_id: str, status: str = "in_progress", **fields: Any) -> Json:
    return {"stream_id": stream_id, "status": status, "version": 1} | fields


async def test_first_report_does_not_rewrite_the_stream(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    [stream_id] = await claimed_streams(client, 1)
    before = await database.streams.find_one({"_id": stream_id})

    answer = await feedback(client, [report(stream_id, video_info=VIDEO_INFO, preview=PREVIEW)])
    assert answer["modified"] == [entry(stream_id, "in_progress")]

    # the stream document is as the claim left it; what it shows is stored beside it
    assert await database.streams.find_one({"_id": stream_id}) == before
    stored = await database.stream_reports.find_one({"_id": stream_id})
    assert stored is not None
    assert (stored["video_info"], stored["preview"], stored["last_error"]) == (
        VIDEO_INFO,
        PREVIEW,
        None,
    )
    # every reader shows it: GET, the list, and the row of the report
    got = await get_stream(client, stream_id)
    assert (got["video_info"], got["preview"]) == (VIDEO_INFO, PREVIEW)
    resp = await client.get("/1/streams")
    [listed] = [s for s in (await resp.json())["streams"] if s["stream_id"] == stream_id]
    assert (listed["video_info"], listed["preview"]) == (VIDEO_INFO, PREVIEW)
    row = await database.stream_logs.find_one({"stream_id": stream_id, "video_info": VIDEO_INFO})
    assert row is not None and row["status"] == "in_progress"


async def test_a_change_after_a_stored_report_shows_and_logs_it(
    client: Client, database: Database
) -> None:
    """A pause (a change that writes no video_info of its own) logs what the stream shows;
    the stream keeps showing it; an error reported after it is shown, and a report that
    ends the stream writes the whole shown state into the stream (newer than the stored
    report from then on)."""
    first, second = await claimed_streams(client, 2)
    await feedback(
        client,
        [
            report(first, video_info=VIDEO_INFO, preview=PREVIEW),
            report(second, video_info=VIDEO_INFO, preview=PREVIEW),
        ],
    )
    await patch_status(client, first, "pause")
    [row] = await database.stream_logs.find({"stream_id": first, "status": "pause"}).to_list()
    assert (row["video_info"], row["preview"]) == (VIDEO_INFO, PREVIEW)
    assert (await get_stream(client, first))["video_info"] == VIDEO_INFO

    await feedback(client, [report(second, error="slow")])
    got = await get_stream(client, second)
    assert (got["last_error"], got["video_info"], got["preview"]) == ("slow", VIDEO_INFO, PREVIEW)

    await feedback(client, [report(second, "failure", error="eof")])
    doc = await database.streams.find_one({"_id": second})
    assert doc is not None and doc[SHOWN_AT] is not None
    assert (doc["status"], doc["last_error"], doc["video_info"], doc["preview"]) == (
        "failure",
        "eof",
        VIDEO_INFO,
        PREVIEW,
    )
    got = await get_stream(client, second)
    assert (got["status"], got["last_error"], got["video_info"]) == ("failure", "eof", VIDEO_INFO)


async def test_a_deleted_streams_report_goes_with_it_and_its_row_shows_it(
    client: Client, database: Database
) -> None:
    [stream_id] = await claimed_streams(client, 1)
    await feedback(client, [report(stream_id, video_info=VIDEO_INFO)])
    resp = await client.delete(f"/1/streams/{stream_id}")
    assert resp.status == 204, await resp.text()
    assert await database.stream_reports.find_one({"_id": stream_id}) is None
    row = await database.stream_logs.find_one({"stream_id": stream_id, "status": "deleted"})
    assert row is not None and row["video_info"] == VIDEO_INFO


async def test_streams_has_only_the_indexes_queries_need(database: Database) -> None:
    names = {index["name"] async for index in await database.streams.list_indexes()}
    assert names == {"_id_"} | {model.document["name"] for model in INDEXES[STREAMS]}
    assert len(INDEXES[STREAMS]) == 7
    # what earlier versions made goes at the next start
    for obsolete in OBSOLETE_INDEXES[STREAMS]:
        await database.streams.create_index([(f"old_{obsolete}", 1)], name=obsolete)
    await create_indexes(database)
    names = {index["name"] async for index in await database.streams.list_indexes()}
    assert not names & set(OBSOLETE_INDEXES[STREAMS])
    assert set(await database.stream_reports.index_information()) <= {"_id_"}


def test_every_streams_index_is_documented_beside_its_query() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for model in INDEXES[STREAMS]:
        assert f"| `streams` | `{model.document['name']}`" in text, model.document["name"]


async def test_a_claim_on_an_empty_queue_does_not_wait_for_deliveries(client: Client) -> None:
    started = time.monotonic()
    assert await claim_ids(client, {}, 10) == []
    assert time.monotonic() - started < 0.15  # FIRST_DELIVERY_WAIT (0.2 s) is not waited


async def test_a_claim_of_many_is_answered_in_a_short_round(client: Client) -> None:
    ids = [await create_stream(client, v1_body(name=f"s{i}")) for i in range(CLAIM_ROUND + 30)]
    first = await claim_ids(client, {}, len(ids))
    assert 0 < len(first) <= len(ids)
    rest: list[str] = []
    for _ in range(20):  # each claim takes what the buffer holds, in rounds of CLAIM_ROUND
        rest += await claim_ids(client, {}, len(ids))
        if len(first) + len(rest) == len(ids):
            break
    assert sorted(first + rest) == sorted(ids)
