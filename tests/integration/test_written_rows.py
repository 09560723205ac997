"""A change writes again the outbox rows it replaces unless its own process wrote them.

Skipping what this process wrote spares the server an insert of duplicates on every change
of a recently changed stream; the rows another writer left (it may have died before writing
them) are still written, and every status change keeps exactly one row."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import shared.store.changes
from shared.core.clock import now_utc
from shared.domain.transitions import Transition
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database
from shared.store.outbox import insert_log_rows
from tests.integration.factories import Client, create_stream, v1_body

Json = dict[str, Any]


async def test_a_change_skips_only_the_rows_its_process_wrote(
    client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await create_stream(client, v1_body(name=f"w{i}", status="pause")) for i in range(2)]
    inserted: list[list[str]] = []

    async def recording(db: Database, rows: list[Json]) -> None:
        inserted.append([row["_id"] for row in rows])
        await insert_log_rows(db, rows)

    monkeypatch.setattr(shared.store.changes, "insert_log_rows", recording)

    async def change(changes: StreamChanges, new: str) -> list[str]:
        """Move both streams to ``new``; the ids of the rows it carried (written again)."""
        docs = await database.streams.find({"_id": {"$in": ids}}).to_list()
        inserted.clear()
        landed = await changes.apply(
            [
                Change(
                    doc,
                    Transition([new], {"status": doc["status"], "version": doc["version"]}, {}),
                    now_utc(),
                    fields={"status": new},
                )
                for doc in docs
            ]
        )
        assert len(landed) == 2
        carried, written = inserted
        assert sorted(written) == sorted(e["log"]["_id"] for c in landed for e in c.entries)
        return carried

    first, second = StreamChanges(database, None), StreamChanges(database, None)
    # the rows of the creates were written by the gateway: carried
    assert len(await change(first, "pending")) == 2
    # those of the first change by this very process: not carried
    assert await change(first, "pause") == []
    # another process does not know them: carried
    assert len(await change(second, "pending")) == 2

    rows = database.stream_logs.find({"stream_id": {"$in": ids}}, {"status": 1})
    statuses = Counter([row["status"] async for row in rows])
    assert statuses == Counter({"pause": 4, "pending": 4})  # once per status change
