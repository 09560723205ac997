"""``GET /{1,2}/streams/events``: live stream events over Server-Sent Events.

Each test subscribes through HTTP, changes streams through the API (or behind its back, as
an agent's feedback or a worker would) and reads what arrives: filters, resuming with
``Last-Event-ID`` on the same gateway and on another one, many subscribers, the cap, and a
subscriber that reads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.keys import EVENTS
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Client,
    body_for,
    create_stream,
    expect_error,
    set_fields,
    v1_body,
)
from tests.integration.sse import Event, EventReader

EVENTS_PATH = "/{version}/streams/events"


@contextlib.asynccontextmanager
async def subscribe(
    client: Client, version: int = 1, params: Any = None, last_event_id: str | None = None
) -> AsyncIterator[EventReader]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    resp = await client.get(
        EVENTS_PATH.format(version=version), params=params or {}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    reader = EventReader(resp)
    ready = await reader.next()
    assert ready.event == "ready" and ready.id
    try:
        yield reader
    finally:
        resp.close()


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


async def patch(client: Client, stream_id: str, version: int = 1, **body: Any) -> None:
    resp = await client.patch(f"/{version}/streams/{stream_id}", json=body)
    assert resp.status == 204, await resp.text()


async def delete(client: Client, stream_id: str) -> None:
    resp = await client.delete(f"/1/streams/{stream_id}")
    assert resp.status == 204, await resp.text()


def summary(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.event, e.json["stream_id"], e.json["status"]) for e in events]


@pytest.mark.parametrize("version", [1, 2])
async def test_created_changed_deleted(client: Client, database: Database, version: int) -> None:
    async with subscribe(client, version) as events:
        stream_id = await create_stream(client, body_for(version, name="cam"), version)
        created = await events.next()
        assert created.event == "created"
        data = created.json
        assert (data["stream_id"], data["account_id"], data["status"], data["version"]) == (
            stream_id,
            ACCOUNT,
            "pending",
            1,
        )
        assert data["stream"]["name"] == "cam"
        assert ("event_handler" in data["stream"]) == (version == 1)

        await patch(client, stream_id, version, status="pause")
        paused = await events.next()
        assert (paused.event, paused.json["status"], paused.json["changed"]) == (
            "changed",
            "pause",
            ["status"],
        )
        assert paused.json["stream"]["status"] == "pause"

        # bookkeeping (claims, liveness, due times) is no event; an agent's report is
        await set_fields(database, stream_id, claim={"agent": "x"}, queued_at=None)
        await set_fields(database, stream_id, **{"autorestart.due_at": None})
        await set_fields(database, stream_id, last_error="decoder failed", version=2)
        reported = await events.next()
        assert reported.event == "changed"
        assert sorted(reported.json["changed"]) == ["last_error", "version"]
        assert reported.json["stream"]["last_error"] == "decoder failed"
        assert reported.json["version"] == 2

        await delete(client, stream_id)
        deleted = await events.next()
        assert deleted.event == "deleted"
        assert (deleted.json["stream_id"], deleted.json["account_id"]) == (stream_id, ACCOUNT)
        assert (deleted.json["status"], deleted.json["stream"]) == ("deleted", None)
        ids = [created.id, paused.id, reported.id, deleted.id]
        assert len(set(ids)) == 4 and all(ids)


async def test_account_and_id_filters(client: Client) -> None:
    async with (
        subscribe(client, params={"account_id": ACCOUNT}) as mine,
        subscribe(client, params={"account_id": OTHER_ACCOUNT}) as theirs,
        subscribe(client) as everyone,
    ):
        a1 = await create_stream(client, v1_body(name="a1"))
        b1 = await create_stream(client, v1_body(name="b1", account_id=OTHER_ACCOUNT))
        a2 = await create_stream(client, v1_body(name="a2"))
        async with subscribe(client, params={"stream_ids": f"{a2},{b1}"}) as some:
            await patch(client, a1, status="pause")
            await patch(client, b1, status="pause")
            await patch(client, a2, status="pause")
            await delete(client, a1)
            await delete(client, b1)
            assert summary(await some.collect(3)) == [
                ("changed", b1, "pause"),
                ("changed", a2, "pause"),
                ("deleted", b1, "deleted"),
            ]
        assert summary(await mine.collect(5)) == [
            ("created", a1, "pending"),
            ("created", a2, "pending"),
            ("changed", a1, "pause"),
            ("changed", a2, "pause"),
            ("deleted", a1, "deleted"),
        ]
        assert summary(await theirs.collect(3)) == [
            ("created", b1, "pending"),
            ("changed", b1, "pause"),
            ("deleted", b1, "deleted"),
        ]
        assert [e.json["stream_id"] for e in await everyone.collect(8)] == [
            a1,
            b1,
            a2,
            a1,
            b1,
            a2,
            a1,
            b1,
        ]


@pytest.mark.parametrize(
    ("params", "headers", "name"),
    [
        ({"account_id": "not-a-uuid"}, {}, "account_id"),
        ({"stream_ids": "1,2"}, {}, "stream_ids"),
        ({"last_event_id": "zz"}, {}, "last_event_id"),
    ],
)
async def test_bad_query_is_a_luna_error(
    client: Client, params: dict[str, str], headers: dict[str, str], name: str
) -> None:
    resp = await client.get("/1/streams/events", params=params, headers=headers)
    await expect_error(resp, 400, 12012, f"Bad query parameters '{name}'")


@pytest.mark.parametrize("last_event_id", ["not hex", "aa", "x00"])
async def test_bad_last_event_id_is_a_luna_error(client: Client, last_event_id: str) -> None:
    resp = await client.get("/2/streams/events", headers={"Last-Event-ID": last_event_id})
    body = await expect_error(resp, 400, 12012)
    assert body["detail"].startswith("Bad header 'Last-Event-ID': ")


async def _changes(client: Client, count: int, prefix: str) -> list[str]:
    return [await create_stream(client, v1_body(name=f"{prefix}{i}")) for i in range(count)]


async def test_resume_after_a_dropped_connection(client: Client) -> None:
    """What happened while the subscriber was away arrives once, in order, then live ones."""
    async with subscribe(client) as first:
        before = await _changes(client, 3, "before")
        got = await first.collect(2)
    last_seen = got[-1].id
    assert last_seen is not None
    missed = await _changes(client, 2, "while-away")
    async with subscribe(client, last_event_id=last_seen) as resumed:
        after = await _changes(client, 1, "after")
        rest = await resumed.collect(4)
        assert [e.json["stream_id"] for e in rest] == [before[2], *missed, *after]
        with pytest.raises(TimeoutError):
            await resumed.next(within=1.5)  # nothing repeated after them


async def test_resume_on_another_gateway(client: Client, settings: Settings) -> None:
    """A resume token from one gateway is good on another: it reads its own change stream
    until it meets its hub's, then goes on live, with no event lost or repeated."""
    async with subscribe(client) as first:
        streams = await _changes(client, 2, "one")
        got = await first.collect(1)
    # the other gateway's hub is running already
    async with gateway(settings) as other, subscribe(other) as warm:
        missed = await _changes(client, 2, "two")
        await warm.collect(2)
        async with subscribe(other, last_event_id=got[0].id) as resumed:
            caught_up = await resumed.collect(3)
            assert [e.json["stream_id"] for e in caught_up] == [streams[1], *missed]
            live = await _changes(other, 2, "three")
            later = await resumed.collect(2)
            assert [e.json["stream_id"] for e in later] == live
            with pytest.raises(TimeoutError):
                await resumed.next(within=1.5)


async def test_resume_from_the_ready_id_loses_nothing(client: Client) -> None:
    resp = await client.get("/1/streams/events")
    reader = EventReader(resp)
    ready = await reader.next()
    resp.close()  # gone before any event
    stream_id = await create_stream(client, v1_body())
    async with subscribe(client, last_event_id=ready.id) as resumed:
        assert summary([await resumed.next()]) == [("created", stream_id, "pending")]


async def test_200_concurrent_subscribers(settings: Settings) -> None:
    many = settings.model_copy(update={"events_max_per_client": 200})  # all from 127.0.0.1
    async with gateway(many) as client:
        await _200_concurrent_subscribers(client)


async def _200_concurrent_subscribers(client: Client) -> None:
    url = str(client.make_url("/2/streams/events"))
    async with ClientSession(
        connector=TCPConnector(limit=0), timeout=ClientTimeout(total=120)
    ) as session:
        responses = await asyncio.gather(*(session.get(url) for _ in range(200)))
        try:
            readers = [EventReader(resp) for resp in responses]
            assert all(resp.status == 200 for resp in responses)
            await asyncio.gather(*(reader.next(within=60) for reader in readers))
            hub = client.app[EVENTS] if client.app is not None else None
            assert hub is not None and len(hub.subscriptions) == 200
            stream_id = await create_stream(client, body_for(2), version=2)
            await patch(client, stream_id, 2, status="pause")
            results = await asyncio.gather(*(reader.collect(2, within=60) for reader in readers))
            expected = [("created", stream_id, "pending"), ("changed", stream_id, "pause")]
            assert all(summary(events) == expected for events in results)
        finally:
            for resp in responses:
                resp.close()


async def test_subscriber_cap(settings: Settings) -> None:
    async with gateway(settings.model_copy(update={"events_max_connections": 2})) as capped:
        async with subscribe(capped), subscribe(capped, version=2):
            resp = await capped.get("/1/streams/events")
            body = await expect_error(resp, 503, 2)
            assert "at most 2 event subscribers" in body["detail"]
        assert capped.app is not None
        hub = capped.app[EVENTS]
        for _ in range(50):  # a subscriber that left frees its slot within a second
            if not hub.subscriptions:
                break
            await asyncio.sleep(0.1)
        assert not hub.subscriptions
        async with subscribe(capped):
            pass


def _silent_subscriber(port: int) -> socket.socket:
    """A client that sends the request and never reads a byte (small receive window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /1/streams/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


async def test_a_subscriber_that_reads_nothing_stays_bounded(
    settings: Settings, database: Database
) -> None:
    """It is disconnected once ``events_buffer`` events wait for it; meanwhile it holds no
    more than that, and the others get every event."""
    buffer = 8
    async with gateway(settings.model_copy(update={"events_buffer": buffer})) as small:
        assert small.app is not None and small.port is not None
        hub = small.app[EVENTS]
        stream_id = await create_stream(small, v1_body())
        async with subscribe(small) as reader:
            silent = _silent_subscriber(small.port)
            try:
                for _ in range(100):
                    if len(hub.subscriptions) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert len(hub.subscriptions) == 2
                big = "x" * 200_000  # each event carries the stream: 200 kB
                most_queued = 0
                for i in range(60):
                    await set_fields(database, stream_id, description=f"{i}{big}")
                    most_queued = max(most_queued, *(s.queued for s in hub.subscriptions))
                    if len(hub.subscriptions) == 1:
                        break
                else:
                    pytest.fail("the silent subscriber was never disconnected")
                assert most_queued <= buffer
                got = await reader.collect(i + 1, within=30)
                assert [e.json["stream"]["description"][:3] for e in got] == [
                    f"{n}{big}"[:3] for n in range(i + 1)
                ]
            finally:
                silent.close()


VIDEO_INFO = {
    "width": 1920,
    "height": 1080,
    "frame_rate": 25,
    "bit_rate": 4_000_000,
    "gop_size": 50,
    "start_time": "2026-12-01T10:00:00Z",
}


async def test_claims_and_feedback_are_events(client: Client, queue_worker: FeedbackWorker) -> None:
    """An agent's claim and its reports arrive as `changed` events; a report that changes
    nothing the API shows (the same status again) makes none."""
    stream_id = await create_stream(client, v1_body())
    async with subscribe(client) as events:
        resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": 1})
        assert resp.status == 200
        claimed = await events.until("changed", stream_id)
        assert claimed.json["status"] == "in_progress"
        item = {"stream_id": stream_id, "version": 1, "status": "in_progress"}
        for report in ({**item, "video_info": VIDEO_INFO}, item):
            resp = await client.post("/1/streams/processing/feedback", json={"streams": [report]})
            assert resp.status == 200, await resp.text()
        reported = await events.until("changed", stream_id)
        assert "video_info" in reported.json["changed"]
        assert reported.json["stream"]["video_info"]["gop_size"] == 50
        resp = await client.post(
            "/1/streams/processing/feedback",
            json={"streams": [{**item, "status": "failure", "error": "no signal"}]},
        )
        assert resp.status == 200
        failed = await events.until("changed", stream_id)
        assert (failed.json["status"], failed.json["stream"]["last_error"]) == (
            "failure",
            "no signal",
        )


async def test_shutdown_ends_the_event_streams(settings: Settings) -> None:
    """A stopping gateway ends its endless responses instead of waiting for them."""
    other = TestClient(TestServer(create_app(settings)))
    await other.start_server()
    closing: asyncio.Future[None] | None = None
    try:
        async with subscribe(other) as events:
            closing = asyncio.ensure_future(other.close())
            with pytest.raises(EOFError):
                while True:
                    await events.next(within=10)
    finally:
        await (closing if closing is not None else other.close())
