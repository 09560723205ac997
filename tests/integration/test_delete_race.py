"""A delete and the changes around it, and a delete interrupted between its phases.

A change that landed before the delete keeps its rows (the ``deleted`` row comes after
them); a PUT that re-versions a stream between the delete's read and its removal makes the
delete read it again (its ``deleted`` row names the version deleted). A delete whose process
dies after removing the documents (phase 1) and before writing their ``deleted`` rows
(phase 2) left a record of the rows it owes: nothing can claim or change those streams, and
the change sweep writes the rows; a recorded stream that was not removed owes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain.statuses import PAUSE
from shared.services.streams import StreamService
from shared.store.changes import StreamChanges
from shared.store.deletions import DELETION
from shared.store.mongo import Database
from tests.integration.factories import Client, claim_ids, create_stream, log_rows, v1_body


class Interrupted(Exception):
    """The process of a delete died between its phases."""


def interrupted_changes(database: Database) -> StreamChanges:
    """A change writer whose deletes stop after phase 1, as a killed process's do."""
    changes = StreamChanges(database, None)

    async def die(rows: list[Doc], records: list[str]) -> None:
        raise Interrupted

    changes.deletions._write_deleted = die  # type: ignore[method-assign]
    return changes


#: the change sweep's delay in these tests (``LUNA_STREAMS_CHANGE_SWEEP_DELAY``)
SWEEP_DELAY = timedelta(seconds=10)


def after_the_sweep_delay() -> datetime:
    return now_utc() + SWEEP_DELAY + timedelta(seconds=1)


async def test_a_patch_before_the_delete_keeps_its_rows(client: Client, database: Database) -> None:
    stream_id = await create_stream(client, v1_body(name="cam"))
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": PAUSE})
    assert resp.status == 204
    await StreamService(database, StreamChanges(database, None)).delete(stream_id, None)
    assert await database.streams.find_one({"_id": stream_id}) is None
    assert await log_rows(database, stream_id) == [("pending", 1), ("pause", 1), ("deleted", 1)]


async def test_a_put_between_read_and_removal_makes_the_delete_read_again(
    client: Client, database: Database
) -> None:
    stream_id = await create_stream(client, v1_body(name="cam"))
    stale = await database.streams.find_one({"_id": stream_id})
    assert stale is not None
    resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(name="cam"))
    assert resp.status == 200, await resp.text()
    changes = StreamChanges(database, None)
    records: list[str] = []
    # removing the stream as read (version 1) removes nothing: it is read again...
    assert await changes.deletions._remove([stale], records) == ([], [stream_id])
    assert await database.streams.find_one({"_id": stream_id}) is not None
    # ...and the record that phase left owes nothing (the stream was not removed)
    assert await database.leases.count_documents({"kind": DELETION}) == 1
    assert await changes.sweep(SWEEP_DELAY, now=after_the_sweep_delay()) == 0
    assert await database.leases.count_documents({"kind": DELETION}) == 0
    await StreamService(database, changes).delete(stream_id, None)
    assert await log_rows(database, stream_id) == [
        ("pending", 1),
        ("restart", 2),
        ("pending", 2),
        ("deleted", 2),
    ]


async def test_the_sweep_writes_the_rows_an_interrupted_delete_owes(
    client: Client, database: Database
) -> None:
    waiting, claimed = [await create_stream(client, v1_body(name="cam")) for _ in range(2)]
    kept = await create_stream(client, v1_body(name="other"))
    assert await claim_ids(client, {"stream_ids": [claimed]}, 1) == [claimed]
    with pytest.raises(Interrupted):
        await StreamService(database, interrupted_changes(database)).delete_many(
            None, None, ["cam"]
        )
    # the streams are gone: their tokens are stale, a report or a PATCH finds nothing
    assert await claim_ids(client, {}, 10) == [kept]
    resp = await client.patch(f"/1/streams/{waiting}", json={"status": PAUSE})
    assert resp.status == 404
    assert await log_rows(database, claimed) == [("pending", 1), ("in_progress", 1)]
    changes = StreamChanges(database, None)
    # not before its writer had time to write them (it may be alive, only slow)
    assert await changes.sweep(SWEEP_DELAY, now=now_utc()) == 0
    assert await changes.sweep(SWEEP_DELAY, now=after_the_sweep_delay()) == 2
    assert await log_rows(database, waiting) == [("pending", 1), ("deleted", 1)]
    assert await log_rows(database, claimed) == [
        ("pending", 1),
        ("in_progress", 1),
        ("deleted", 1),
    ]
    assert await database.leases.count_documents({"kind": DELETION}) == 0
    assert await changes.sweep(SWEEP_DELAY, now=after_the_sweep_delay()) == 0
