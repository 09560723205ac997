"""Feedback that names one stream many times costs what its size costs, no more.

A hostile (or confused) agent once named one stream 10,000 times in one batch: each
duplicate became a round of its own, planned in quadratic time and applied one after
another, and every other agent's feedback waited behind it (~45 s). Reports of one stream
that are applied together are now folded, in order, into one change of the stream (one
guarded update, one log row); every duplicate still gets its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from queue_worker.worker import FeedbackWorker
from shared.domain.feedback_batch import FeedbackBatch, FeedbackEntry, FeedbackOutcome
from shared.domain.models import FeedbackItem
from shared.services.feedback import apply_feedback
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database
from shared.store.shown import with_report
from tests.integration.factories import (
    Client,
    claimed_streams,
    log_rows,
    worker_report,
)

Json = dict[str, Any]
DUPLICATES = 10_000


class CountingChanges(StreamChanges):
    """The real change writer, counting its bulk writes (one per round of changes)."""

    def __init__(self, database: Database) -> None:
        super().__init__(database, None)
        self.writes: list[int] = []

    async def apply(self, changes: Sequence[Change]) -> list[Change]:
        self.writes.append(len(changes))
        return await super().apply(changes)


def entry(stream_id: str, status: str, version: int = 1) -> FeedbackEntry:
    return FeedbackEntry(stream_id=stream_id, status=status, version=version)


async def shown(database: Database, stream_id: str) -> Json:
    """The stream as the API shows it (its document and its latest stored report)."""
    stream = await with_report(database, await database.streams.find_one({"_id": stream_id}))
    assert stream is not None
    return stream


async def feedback_rows(database: Database, stream_id: str) -> list[Json]:
    rows = await database.stream_logs.find({"stream_id": stream_id}).to_list()
    return [row for row in rows if ":" in row["_id"]]  # written by feedback


@pytest.mark.timeout(600)
async def test_ten_thousand_duplicates_cost_one_change(client: Client, database: Database) -> None:
    target, other, ended = await claimed_streams(client, 3)
    items = [worker_report(other, error="other")]
    items += [worker_report(target, error=f"e{n}") for n in range(DUPLICATES)]
    items += [
        worker_report(target, version=2),  # an old or unknown version among them: unmodified
        worker_report(ended, "done"),
        worker_report(ended, error="after done"),  # after its end: unmodified, as before
    ]
    # ten times what an agent may send in one batch (the gateway and the worker refuse
    # that): put together as if from batches that arrived together
    batch = FeedbackBatch.model_construct(
        batch_id="dups", streams=[FeedbackItem.model_validate(item) for item in items]
    )
    changes = CountingChanges(database)
    started = time.monotonic()
    [result] = await apply_feedback(database, changes, [batch])
    elapsed = time.monotonic() - started
    print(f"\n{DUPLICATES} duplicates applied in {elapsed:.2f} s, writes {changes.writes[:5]}")

    # one guarded update for the one status change (the others' reports only change what
    # their streams show: stored reports, shared.store.shown)
    assert changes.writes == [1]
    assert Counter(e.stream_id for e in result.modified) == Counter(
        {target: DUPLICATES, other: 1, ended: 1}
    )
    assert all(e == entry(e.stream_id, e.status) for e in result.modified)
    assert result.unmodified == [entry(target, "in_progress"), entry(ended, "done")]

    stream = await shown(database, target)
    assert (stream["status"], stream["last_error"]) == ("in_progress", f"e{DUPLICATES - 1}")
    # one row for the stream's one change, the last report's; none for the superseded
    [row] = await feedback_rows(database, target)
    assert (row["status"], row["error"]) == ("in_progress", f"e{DUPLICATES - 1}")
    assert row["_id"] == f"dups:{DUPLICATES}"  # the last report's feedback id
    assert await log_rows(database, ended) == [("pending", 1), ("in_progress", 1), ("done", 1)]
    assert elapsed < 30, elapsed  # linear: ~1 s here; 45 s before


async def test_folded_reports_keep_every_rule(client: Client, database: Database) -> None:
    """In order: what a report shows stays until another replaces it; an ending report
    ends the stream (one row for its one status change); what follows is unmodified."""
    [stream_id] = await claimed_streams(client, 1)
    info = {
        "width": 640,
        "height": 480,
        "frame_rate": 25,
        "bit_rate": 1,
        "gop_size": 1,
        "start_time": "2024-03-01T10:00:00Z",
    }
    preview = {"last_frame": {"url": "http://127.0.0.1:34569/frame"}}
    # as validated (and stored): every field, null where not given
    stored_info, stored_preview = (
        info | {"duration": None, "progress": None},
        {"live": None} | preview,
    )
    items = [
        worker_report(stream_id, error="warming up", video_info=info),
        worker_report(stream_id, preview=preview),
        worker_report(stream_id, "failure", error="eof"),
        worker_report(stream_id, error="too late"),
    ]
    changes = CountingChanges(database)
    [result] = await apply_feedback(database, changes, [FeedbackBatch(batch_id="b", streams=items)])
    assert changes.writes == [1]
    assert result.modified == [
        entry(stream_id, "in_progress"),
        entry(stream_id, "in_progress"),
        entry(stream_id, "failure"),
    ]
    assert result.unmodified == [entry(stream_id, "failure")]
    stream = await shown(database, stream_id)
    assert stream is not None
    assert (stream["status"], stream["last_error"]) == ("failure", "eof")
    assert (stream["video_info"], stream["preview"]) == (stored_info, stored_preview)
    assert stream["autorestart"]["status"] == "disabled"
    assert await log_rows(database, stream_id) == [
        ("pending", 1),
        ("in_progress", 1),
        ("failure", 1),
    ]
    [row] = await feedback_rows(database, stream_id)
    assert (row["_id"], row["error"], row["video_info"], row["preview"]) == (
        "b:2",
        "eof",
        stored_info,
        stored_preview,
    )


async def test_folded_batch_redelivered_is_applied_once(client: Client, database: Database) -> None:
    a, b = await claimed_streams(client, 2)
    items = [
        worker_report(a, error="1"),
        worker_report(b, "done"),
        worker_report(a, error="2"),
        worker_report(b, version=9),
        worker_report(a, error="3"),
    ]
    first = await apply_feedback(
        database, StreamChanges(database, None), [FeedbackBatch(batch_id="r", streams=items)]
    )
    after_first = await database.streams.find({}).sort("_id", 1).to_list()
    rows_first = await database.stream_logs.find({}).sort("_id", 1).to_list()
    again = await apply_feedback(
        database,
        StreamChanges(database, None),
        [FeedbackBatch(batch_id="r", streams=items, redelivered=True)],
    )

    def outcome(results: list[FeedbackOutcome]) -> tuple[Counter[str], list[FeedbackEntry]]:
        [result] = results
        return Counter(str(e) for e in result.modified), result.unmodified

    assert outcome(first) == outcome(again)
    assert outcome(first) == (
        Counter(str(e) for e in [entry(a, "in_progress")] * 3 + [entry(b, "done")]),
        [entry(b, "done")],
    )
    assert await database.streams.find({}).sort("_id", 1).to_list() == after_first
    assert await database.stream_logs.find({}).sort("_id", 1).to_list() == rows_first


async def test_duplicates_do_not_hold_other_agents_feedback(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    """Over HTTP with a real queue worker: one agent sends the largest batch there is, one
    stream a thousand times; another agent's report is answered meanwhile, at once."""
    hostile, honest = await claimed_streams(client, 2)
    flood = [worker_report(hostile, error=f"e{n}") for n in range(1000)]

    async def post(items: list[Json]) -> tuple[int, Json, float]:
        started = time.monotonic()
        resp = await client.post("/1/streams/processing/feedback", json={"streams": items})
        return resp.status, await resp.json(), time.monotonic() - started

    flooding = asyncio.create_task(post(flood))
    await asyncio.sleep(0.05)
    status, answer, waited = await post([worker_report(honest, "done")])
    flood_status, flood_answer, flood_took = await flooding
    print(f"\nhonest report answered in {waited:.2f} s; the flood in {flood_took:.2f} s")
    assert status == 200, answer
    assert answer["streams"]["modified"] == [entry(honest, "done").model_dump()]
    assert flood_status == 200, flood_answer
    assert len(flood_answer["streams"]["modified"]) == 1000
    assert waited < 3, waited
    [row] = await feedback_rows(database, hostile)
    assert row["error"] == "e999"
