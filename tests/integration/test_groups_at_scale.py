"""The linker at its bound: a thousand streams attached in one request (a volume test, kept
out of the fast tier; the rest of the groups API is in ``tests/fast/test_groups_api.py``)."""

from __future__ import annotations

import uuid

from shared.store.mongo import Database
from tests.fast.test_groups_api import groups_of
from tests.integration.factories import (
    Client,
    count,
    create_group,
    create_stream,
    expect_error,
    link,
    snapshot,
    v1_body,
)


async def test_attach_a_thousand_streams(client: Client, database: Database) -> None:
    group_id = await create_group(client, "big")
    template = await database.streams.find_one(
        {"_id": await create_stream(client, v1_body(status="pause"))}
    )
    assert template is not None
    clones = [template | {"_id": str(uuid.uuid4()), "outbox": []} for _ in range(999)]
    await database.streams.insert_many(clones)
    stream_ids = [template["_id"]] + [clone["_id"] for clone in clones]
    resp = await link(client, "attach", group_id, stream_ids)
    assert resp.status == 204
    assert await count(client, params={"group_name": "big"}) == 1000
    assert await groups_of(client, stream_ids[-1]) == ["big"]
    before = await snapshot(database)
    resp = await link(client, "detach", group_id, [*stream_ids, str(uuid.uuid4())])
    error = await expect_error(resp, 400, 12022)
    assert error["detail"].startswith(
        "Failed to validate input json. Path: 'stream_ids', message: "
    )
    # the 1001 ids are quoted cut, with their count
    assert error["detail"].endswith(" is too long (1001 items, at most 1000)'")
    assert await snapshot(database) == before
