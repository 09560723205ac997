"""The status machine (:mod:`shared.domain.transitions`) as the change writer applies it:
every operation writes exactly one log row per status it passes through (group ones none),
and a stream that enters ``pending`` while it joins a group gets that group's token at once,
whichever of the two changes lands first (no reconciler runs there)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from gateway.keys import BROKER, GROUPS, STREAMS
from shared.core.clock import now_utc
from shared.domain import transitions
from shared.domain.feedback_batch import FeedbackBatch
from shared.messaging.publisher import BrokerTokenPublisher
from shared.services.downgrade import downgrade_silent
from shared.services.feedback import apply_feedback
from shared.services.reconciler import reconcile_tokens
from shared.services.restarts import restart_due
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    Client,
    claim_ids,
    create_group,
    create_stream,
    link,
    log_rows,
    patch_status,
    v1_body,
    worker_report,
)

Rows = list[tuple[str, int]]


async def attach_or_detach(client: Client, action: str, group_id: str, ids: list[str]) -> None:
    resp = await link(client, action, group_id, ids)
    assert resp.status == 204, await resp.text()


async def report(
    database: Database, stream_id: str, status: str, batch: str, version: int = 2
) -> None:
    item = worker_report(stream_id, status, version=version, error="e")
    batches = [FeedbackBatch(batch_id=batch, streams=[item])]
    [answer] = await apply_feedback(database, StreamChanges(database, None), batches)
    assert [entry.stream_id for entry in answer.modified] == [stream_id]


async def rows_added(
    database: Database, stream_id: str, operation: Callable[[], Awaitable[Any]]
) -> Rows:
    before = await log_rows(database, stream_id)
    await operation()
    after = await log_rows(database, stream_id)
    assert after[: len(before)] == before
    return after[len(before) :]


async def test_each_operation_writes_one_row_per_status_it_passes(
    client: Client, database: Database
) -> None:
    changes = StreamChanges(database, None)
    group_id = await create_group(client, "rows")
    stream_id = await create_stream(client, v1_body(name="cam", status="pause"))
    assert await log_rows(database, stream_id) == [("pause", 1)]

    async def put() -> None:
        resp = await client.put(f"/1/streams/{stream_id}", json=v1_body(name="cam"))
        assert resp.status == 200, await resp.text()

    async def lose_handler() -> None:
        # silent since its claim (on the real clock: the rows that follow come after)
        assert await downgrade_silent(database, changes, period=0.0) == 1

    async def fail_then_restart() -> None:
        await report(database, stream_id, "failure", "b-fail")

    async def restart() -> None:
        assert await restart_due(database, changes) == 1

    async def claim() -> None:
        assert await claim_ids(client, {"stream_ids": [stream_id]}) == [stream_id]

    async def delete(path: str) -> None:
        resp = await client.delete(path)
        assert resp.status == 204, await resp.text()

    steps: Sequence[tuple[Callable[[], Awaitable[Any]], Rows]] = [
        (lambda: attach_or_detach(client, "attach", group_id, [stream_id]), []),
        (lambda: patch_status(client, stream_id, "pending"), [("pending", 1)]),
        (lambda: patch_status(client, stream_id, "pending"), []),  # already there
        (claim, [("in_progress", 1)]),
        (lambda: patch_status(client, stream_id, "pending"), [("restart", 1), ("pending", 1)]),
        (claim, [("in_progress", 1)]),
        (lose_handler, [("handler_lost", 1), ("restart", 1), ("pending", 1)]),
        (put, [("restart", 2), ("pending", 2)]),
        (lambda: attach_or_detach(client, "detach", group_id, [stream_id]), []),
        (claim, [("in_progress", 2)]),
        (lambda: report(database, stream_id, "in_progress", "b-alive"), [("in_progress", 2)]),
        (fail_then_restart, [("failure", 2)]),
        (restart, [("restart", 2), ("pending", 2)]),
        (lambda: patch_status(client, stream_id, "cancel"), [("cancel", 2)]),
        (lambda: attach_or_detach(client, "attach", group_id, [stream_id]), []),
        (lambda: delete(f"/1/groups/{group_id}"), []),
        (lambda: delete(f"/1/streams/{stream_id}"), [("deleted", 2)]),
    ]
    for number, (operation, expected) in enumerate(steps):
        if operation is fail_then_restart:  # autorestart on, so that the failure arms it
            await database.streams.update_one(
                {"_id": stream_id},
                {
                    "$set": {
                        "autorestart.restart": 1,
                        "autorestart.attempt_count": 2,
                        "autorestart.delay": 0,
                    }
                },
            )
        added = await rows_added(database, stream_id, operation)
        assert added == expected, f"step {number}: {added} != {expected}"


@pytest.fixture
def racing(client: Client) -> Callable[[object, Callable[[], Awaitable[None]]], None]:
    """Run a racing operation once, just before the next change a service applies."""

    def arm(service: object, race: Callable[[], Awaitable[None]]) -> None:
        writer: StreamChanges = service.changes  # type: ignore[attr-defined]
        apply = writer.apply
        done: list[bool] = []

        async def apply_after_the_race(changes: Sequence[Change], **kwargs: Any) -> list[Change]:
            if not done:
                done.append(True)
                await race()
            return await apply(changes, **kwargs)

        service.changes = _Writer(writer, apply_after_the_race)  # type: ignore[attr-defined]

    return arm


class _Writer:
    """A change writer whose ``apply`` runs something first (everything else is the
    writer's own)."""

    def __init__(self, writer: StreamChanges, apply: Any) -> None:
        self._writer = writer
        self.apply = apply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


async def claimable_through(client: Client, group_id: str) -> list[str]:
    return await claim_ids(client, {"group_ids": [group_id]})


async def test_queued_again_while_the_attach_was_computed(
    client: Client, database: Database, racing: Any
) -> None:
    """The attach read the stream pending; before it lands the stream is claimed and sent
    back to the queue (a new place in it): the attach's guard (the stream as read) fails, it
    reads again and queues the group token of the stream's new place, not a stale one."""
    group_id = await create_group(client, "race-1")
    stream_id = await create_stream(client, v1_body(name="cam"))

    async def claimed_and_back() -> None:
        assert await claim_ids(client, {"stream_ids": [stream_id]}) == [stream_id]
        await patch_status(client, stream_id, "pending")

    racing(client.app[GROUPS], claimed_and_back)
    await attach_or_detach(client, "attach", group_id, [stream_id])
    assert await claimable_through(client, group_id) == [stream_id]


async def test_attached_while_the_change_into_pending_was_computed(
    client: Client, database: Database, racing: Any
) -> None:
    """The patch read the stream paused and in no group; before it lands the stream joins
    the group: the patch's guard (the groups read) fails, it reads again, and its token goes
    to the group's queue as well."""
    group_id = await create_group(client, "race-2")
    stream_id = await create_stream(client, v1_body(name="cam", status="pause"))
    groups = client.app[GROUPS]
    racing(client.app[STREAMS], lambda: groups.link(ACCOUNT, group_id, "attach", [stream_id]))
    await patch_status(client, stream_id, "pending")
    assert await claimable_through(client, group_id) == [stream_id]
    assert await log_rows(database, stream_id) == [("pause", 1), ("pending", 1), ("in_progress", 1)]


async def test_attaching_a_pending_stream_queues_its_group_token_through_the_outbox(
    client: Client, database: Database
) -> None:
    group_id = await create_group(client, "outbox")
    stream_id = await create_stream(client, v1_body(name="cam"))
    await attach_or_detach(client, "attach", group_id, [stream_id])
    doc = await database.streams.find_one({"_id": stream_id}, {"outbox": 1, "queued_at": 1})
    assert doc is not None
    [token] = [e["token"] for e in doc["outbox"] if "log" not in e]
    assert token["groups"] == [group_id] and token["only_groups"] is True
    # the entries of the create stay beside it (their row and token may be owed still)
    assert [e["log"]["status"] for e in doc["outbox"] if "log" in e] == ["pending"]
    # attaching again changes nothing, and queues nothing
    await attach_or_detach(client, "attach", group_id, [stream_id])
    again = await database.streams.find_one({"_id": stream_id}, {"outbox": 1, "queued_at": 1})
    assert again == doc
    assert await claimable_through(client, group_id) == [stream_id]


async def test_a_group_token_its_writer_did_not_publish_is_the_reconcilers(
    client: Client, database: Database
) -> None:
    """A writer that died after the attach landed, before its publish: the reconciler sees
    the group's queue short of its pending streams and publishes the token."""
    group_id = await create_group(client, "lost")
    stream_id = await create_stream(client, v1_body(name="cam"))
    doc = await database.streams.find_one({"_id": stream_id})
    assert doc is not None
    silent = StreamChanges(database, None)  # no publisher: its publish is lost
    await silent.apply([Change(doc, transitions.attach(doc, group_id, "lost"), now_utc())])
    assert await claimable_through(client, group_id) == []
    broker = client.app[BROKER]
    assert await reconcile_tokens(database, broker, BrokerTokenPublisher(broker), grace=0.0) >= 1
    assert await claimable_through(client, group_id) == [stream_id]
