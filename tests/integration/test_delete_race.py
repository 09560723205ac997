"""The delete is guarded like every other change: a claim or PATCH that lands between the
delete's read and its write is not lost with its log rows; the delete reads again."""

from __future__ import annotations

from shared.mongo import Database
from shared.statuses import PAUSE
from shared.streams.changes import StreamChanges
from shared.streams.service import StreamService
from tests.integration.factories import Client, create_stream, log_rows, v1_body


async def test_a_patch_between_read_and_delete_keeps_its_rows(
    client: Client, database: Database
) -> None:
    stream_id = await create_stream(client, v1_body(name="cam"))
    stale = await database.streams.find_one({"_id": stream_id})
    assert stale is not None
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": PAUSE})
    assert resp.status == 204
    changes = StreamChanges(database, None)
    # the delete computed from the stale read loses the race: nothing is deleted...
    assert await changes.delete([stale]) == []
    assert await database.streams.find_one({"_id": stream_id}) is not None
    assert await log_rows(database, stream_id) == [("pending", 1), ("pause", 1)]
    # ...and the service reads again and deletes the stream as it is now
    await StreamService(database, changes).delete(stream_id, None)
    assert await database.streams.find_one({"_id": stream_id}) is None
    assert await log_rows(database, stream_id) == [("pending", 1), ("pause", 1), ("deleted", 1)]
