"""Feedback batches are delivered at least once and applied exactly once.

A queue worker acknowledges a batch only after applying it, so a worker that dies mid-batch
leaves it to be redelivered; :func:`shared.services.feedback.apply_feedback` recognises the items it
already applied (feedback ids ``<batch id>:<index>``) and writes each log row once.

Run as a module (``python -m tests.integration.test_feedback_redelivery``) this file is a
queue worker that hangs between the stream update and the log rows, so the test can kill -9
it at exactly that point. (A SIGSTOP variant, freezing a plain worker once it holds the
batch, is left out: nothing observable tells when it holds the batch but has not yet
written, so it cannot be made deterministic.)
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import pytest

import shared.store.changes
from shared.core.clock import now_utc
from shared.core.settings import Settings
from shared.domain.feedback_batch import FeedbackBatch
from shared.messaging.broker import QueueNames
from shared.services.feedback import apply_feedback
from shared.store.changes import StreamChanges
from shared.store.mongo import Database
from shared.store.outbox import insert_log_rows
from shared.store.shown import with_report
from tests.integration.factories import (
    MISSING_ID,
    Client,
    claimed_streams,
    log_rows,
    queue_depth,
    worker_report,
)
from tests.processes import running, worker
from tests.waits import wait_for

Json = dict[str, Any]

#: the change sweep's delay in these tests (``LUNA_STREAMS_CHANGE_SWEEP_DELAY``)
SWEEP_DELAY = timedelta(seconds=10)


async def stored(database: Database, ids: list[str]) -> dict[str, Json]:
    """What feedback may change on each stream (the claim carries the feedback ids)."""
    fields = ("status", "version", "last_error", "video_info", "preview", "claim", "autorestart")
    docs = database.streams.find({"_id": {"$in": ids}}, dict.fromkeys(fields, 1))
    return {doc.pop("_id"): doc async for doc in docs}


async def shown(database: Database, stream_id: str) -> Json:
    """The stream as the API shows it (its document and its latest stored report)."""
    stream = await with_report(database, await database.streams.find_one({"_id": stream_id}))
    assert stream is not None
    return stream


async def feedback_rows(database: Database, ids: list[str]) -> Counter[tuple[str, str, str]]:
    """(stream_id, status, row id) of the log rows written by feedback (not by the claim)."""
    rows = await database.stream_logs.find({"stream_id": {"$in": ids}}).to_list()
    return Counter(
        (row["stream_id"], row["status"], row["_id"]) for row in rows if ":" in row["_id"]
    )


@dataclass
class Answered:
    """A batch's answers, as the agent reads them."""

    modified: list[Json]
    unmodified: list[Json]


def outcome(result: Answered) -> tuple[list[Json], list[Json]]:
    return result.modified, result.unmodified


async def apply(
    database: Database, batch_id: str, items: list[Json], *, redelivered: bool = False
) -> Answered:
    """What a queue worker does with one delivered batch."""
    batch = FeedbackBatch(batch_id=batch_id, streams=items, redelivered=redelivered)
    [result] = await apply_feedback(database, StreamChanges(database, None), [batch])
    return Answered(**result.model_dump())


async def test_same_batch_twice_is_applied_once(client: Client, database: Database) -> None:
    a, b, c = await claimed_streams(client, 3)
    items = [
        worker_report(a, "done"),
        worker_report(b, "in_progress", error="slow"),
        worker_report(c, "failure", error="eof"),
        worker_report(MISSING_ID, "done"),
    ]
    first = await apply(database, "batch-1", items)
    after_first = await stored(database, [a, b, c])
    second = await apply(database, "batch-1", items, redelivered=True)

    expected = [
        {"stream_id": a, "status": "done", "version": 1},
        {"stream_id": b, "status": "in_progress", "version": 1},
        {"stream_id": c, "status": "failure", "version": 1},
    ]
    not_found = [{"stream_id": MISSING_ID, "status": "not_found", "version": 1}]
    assert outcome(first) == outcome(second) == (expected, not_found)
    assert await stored(database, [a, b, c]) == after_first  # the second pass changed nothing
    assert await feedback_rows(database, [a, b, c]) == Counter(
        {
            (a, "done", "batch-1:0"): 1,
            (b, "in_progress", "batch-1:1"): 1,
            (c, "failure", "batch-1:2"): 1,
        }
    )
    for stream_id in (a, b, c):
        assert len(await log_rows(database, stream_id)) == 3  # pending, in_progress, feedback
    # a new batch is new feedback: applied (and logged) again
    again = await apply(database, "batch-2", [worker_report(b, "done")])
    assert again.modified == [{"stream_id": b, "status": "done", "version": 1}]
    assert await log_rows(database, b) == [
        ("pending", 1),
        ("in_progress", 1),
        ("in_progress", 1),
        ("done", 1),
    ]


async def test_redelivered_batch_does_not_undo_a_later_report(
    client: Client, database: Database
) -> None:
    """batch-1 (in_progress) applied, then batch-2 (done); batch-1 comes back late."""
    [stream_id] = await claimed_streams(client, 1)
    await apply(database, "batch-1", [worker_report(stream_id, "in_progress", error="late")])
    await apply(database, "batch-2", [worker_report(stream_id, "done")])
    before = await stored(database, [stream_id])
    late = await apply(
        database,
        "batch-1",
        [worker_report(stream_id, "in_progress", error="late")],
        redelivered=True,
    )
    # it was applied, so the agent hears "modified"; but the stream stays done
    assert late.modified == [{"stream_id": stream_id, "status": "in_progress", "version": 1}]
    assert await stored(database, [stream_id]) == before
    assert before[stream_id]["status"] == "done"
    assert await log_rows(database, stream_id) == [
        ("pending", 1),
        ("in_progress", 1),
        ("in_progress", 1),
        ("done", 1),
    ]


class WorkerDied(Exception):
    pass


async def test_worker_dies_between_update_and_log_rows(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await claimed_streams(client, 3)
    items = [
        worker_report(ids[0], "done"),
        worker_report(ids[1], "failure", error="boom"),
        worker_report(ids[2], "in_progress", video_info=None, error="warming up"),
    ]
    calls: list[int] = []

    async def dies_once(db: Database, rows: list[Json]) -> None:
        if any(row["_id"].startswith("batch-1") for row in rows):
            calls.append(len(rows))
            if len(calls) == 1:
                raise WorkerDied
        await insert_log_rows(db, rows)

    monkeypatch.setattr(shared.store.changes, "insert_log_rows", dies_once)
    with pytest.raises(WorkerDied):
        await apply(database, "batch-1", items)
    half_done = await stored(database, ids)
    assert [half_done[sid]["status"] for sid in ids] == ["done", "failure", "in_progress"]
    assert await feedback_rows(database, ids) == Counter()  # the update landed, no rows

    # the in_progress report changes no status: its stream shows it through its stored
    # report (shared.store.shown), written with the reports' rows, after the changes
    assert (await shown(database, ids[2]))["last_error"] is None
    result = await apply(database, "batch-1", items, redelivered=True)
    # the first delivery died writing the changes' rows; the redelivery wrote them, from
    # the outboxes, and applied the in_progress report it had not got to
    assert calls == [2, 2]
    assert (await shown(database, ids[2]))["last_error"] == "warming up"
    assert result.modified == [
        {"stream_id": i["stream_id"], "status": i["status"], "version": 1} for i in items
    ]
    assert result.unmodified == []
    assert await stored(database, ids) == half_done  # each stream updated once
    for index, sid in enumerate(ids[:2]):
        assert half_done[sid]["claim"]["feedback_ids"] == [f"batch-1:{index}"]
    assert await feedback_rows(database, ids) == Counter(
        {(i["stream_id"], i["status"], f"batch-1:{n}"): 1 for n, i in enumerate(items)}
    )
    row = await database.stream_logs.find_one({"_id": "batch-1:1"})
    assert row is not None and (row["error"], row["version"]) == ("boom", 1)


async def test_worker_dies_between_writes_after_the_ttl_loses_no_row(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is never delivered again (its TTL passed while the worker died): the
    changes carry their rows, and the change sweep writes them. The in_progress report,
    which changes no status, was not applied (nor acknowledged): no row, no report."""
    ids = await claimed_streams(client, 3)
    items = [
        worker_report(ids[0], "done"),
        worker_report(ids[1], "failure", error="boom"),
        worker_report(ids[2], "in_progress", error="warming up"),
    ]

    async def dies(db: Database, rows: list[Json]) -> None:
        if any(row["_id"].startswith("batch-ttl") for row in rows):
            raise WorkerDied
        await insert_log_rows(db, rows)

    monkeypatch.setattr(shared.store.changes, "insert_log_rows", dies)
    with pytest.raises(WorkerDied):
        await apply(database, "batch-ttl", items)
    monkeypatch.undo()
    assert await feedback_rows(database, ids) == Counter()
    changes = StreamChanges(database, None)
    later = now_utc() + SWEEP_DELAY * 2
    assert await changes.sweep(SWEEP_DELAY, now=later) == 2
    assert await feedback_rows(database, ids) == Counter(
        {(i["stream_id"], i["status"], f"batch-ttl:{n}"): 1 for n, i in enumerate(items[:2])}
    )
    assert (await shown(database, ids[2]))["last_error"] is None
    assert await changes.sweep(SWEEP_DELAY, now=later) == 0  # each change is finished once


# --- a real worker process killed mid-batch ---------------------------------------------


async def publish_batch(settings: Settings, batch_id: str, items: list[Json]) -> None:
    """What a gateway would publish, without reply_to: nobody waits for the answer."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps({"streams": items}).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=batch_id,
            ),
            QueueNames(settings.queue_prefix).feedback,
            mandatory=True,
        )


@pytest.mark.slow
async def test_worker_killed_mid_batch_redelivers_and_applies_once(
    client: Client, database: Database, settings: Settings
) -> None:
    ids = await claimed_streams(client, 4)
    statuses = ["done", "failure", "in_progress", "done"]
    items = [
        worker_report(sid, status, error=f"e{n}")
        for n, (sid, status) in enumerate(zip(ids, statuses, strict=True))
    ]
    feedback_queue = QueueNames(settings.queue_prefix).feedback
    await publish_batch(settings, "batch-kill", items)
    assert await queue_depth(settings, feedback_queue) == 1

    changing = [n for n, status in enumerate(statuses) if status != "in_progress"]

    async def updated() -> bool:
        docs = await stored(database, ids)
        return all(f"batch-kill:{n}" in docs[ids[n]]["claim"]["feedback_ids"] for n in changing)

    # a worker that hangs right after the stream update: kill -9 it there
    doomed = worker("tests.integration.test_feedback_redelivery", settings)
    with running(doomed):
        await wait_for(updated, timeout=30)
        doomed.kill()
    after_update = await stored(database, ids)
    assert [after_update[sid]["status"] for sid in ids] == statuses
    assert await feedback_rows(database, ids) == Counter()  # died before its log rows

    # the batch was never acknowledged: RabbitMQ hands it to the next worker
    async def logged() -> bool:
        return sum((await feedback_rows(database, ids)).values()) >= len(items)

    with running(worker("queue_worker", settings)) as [survivor]:
        await wait_for(logged, timeout=30)
    assert survivor.process is not None and survivor.process.returncode == 0

    assert await feedback_rows(database, ids) == Counter(
        {
            (sid, status, f"batch-kill:{n}"): 1
            for n, (sid, status) in enumerate(zip(ids, statuses, strict=True))
        }
    )
    assert await stored(database, ids) == after_update  # updated once, by the first worker
    assert await queue_depth(settings, feedback_queue) == 0  # acknowledged, not requeued
    for n, sid in enumerate(ids):
        assert (await shown(database, sid))["last_error"] == f"e{n}"
    for n in changing:  # the in_progress report changed no status: its stored report
        assert after_update[ids[n]]["claim"]["feedback_ids"] == [f"batch-kill:{n}"]


def _worker_that_hangs_before_its_log_rows() -> None:
    """``python -m queue_worker``, except that it never gets to write the log rows."""
    from queue_worker.__main__ import run

    async def hang(database: Database, rows: list[Json]) -> None:
        if any(row["_id"].startswith("batch-kill") for row in rows):
            await asyncio.Event().wait()
        await insert_log_rows(database, rows)

    setattr(shared.store.changes, "insert_log_rows", hang)  # noqa: B010
    run()


if __name__ == "__main__":
    _worker_that_hangs_before_its_log_rows()
