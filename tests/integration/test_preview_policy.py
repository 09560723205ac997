"""Preview URLs are checked when the feedback arrives (design.md "Previews"): http(s), no
user info, an IP address that is the agent's own (or inside the configured agent networks;
``X-Forwarded-For`` believed only from a trusted proxy), never the gateway itself. A bad one
is 12022 at its path, and the batch writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from shared.store.shown import with_report
from tests.integration.factories import (
    Client,
    Json,
    bad_json_detail,
    claimed_streams,
    expect_error,
    snapshot,
)

AGENT = "http://127.0.0.1:34569"  # the test client connects from 127.0.0.1
ELSEWHERE = "http://10.0.0.7:34569"


def item(stream_id: str, live: str | None = None, last_frame: str | None = None) -> Json:
    preview: Json = {}
    if live is not None:
        preview["live"] = {"url": live}
    if last_frame is not None:
        preview["last_frame"] = {"url": last_frame}
    return {"stream_id": stream_id, "status": "in_progress", "version": 1, "preview": preview}


async def post_feedback(client: Client, items: list[Json], **headers: str) -> Any:
    return await client.post(
        "/1/streams/processing/feedback", json={"streams": items}, headers=headers
    )


@pytest.fixture
async def client_with(settings: Settings) -> AsyncIterator[Any]:
    """Gateways with changed settings, closed at the end of the test."""
    clients: list[Client] = []

    async def make(**changes: Any) -> Client:
        changed = Settings(**{**settings.model_dump(), **changes})
        test_client: Client = TestClient(TestServer(create_app(changed)))
        await test_client.start_server()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        await test_client.close()


async def test_bad_preview_urls_are_refused_and_write_nothing(
    client: Client, database: Database
) -> None:
    first, second = await claimed_streams(client, 2)
    own = f"http://127.0.0.1:{client.port}/1/streams/{first}/preview/handler/last_frame"
    cases = [
        ([item(first, live=f"{ELSEWHERE}/live")], "streams.0.preview.live.url", "URL host invalid"),
        (
            [item(first, live=f"{AGENT}/live"), item(second, last_frame=f"{ELSEWHERE}/frame")],
            "streams.1.preview.last_frame.url",
            "URL host invalid",
        ),
        (
            [item(first, last_frame="http://user:pass@127.0.0.1:34569/frame")],
            "streams.0.preview.last_frame.url",
            "URL must not carry user info",
        ),
        (
            [item(first, live="ftp://127.0.0.1/live")],
            "streams.0.preview.live.url",
            "URL scheme invalid: expected http or https",
        ),
        (
            [item(first, live="../dictionary")],
            "streams.0.preview.live.url",
            "URL scheme invalid: expected http or https",
        ),
        (
            [item(first, live="http://localhost:34569/live")],
            "streams.0.preview.live.url",
            "URL host invalid",
        ),
        ([item(first, last_frame=own)], "streams.0.preview.last_frame.url", "URL host invalid"),
        (
            [item(first, live="http://0.0.0.0:34569/live")],
            "streams.0.preview.live.url",
            "URL host invalid",
        ),
    ]
    before = await snapshot(database)
    for items, path, message in cases:
        resp = await post_feedback(client, items)
        await expect_error(resp, 400, 12022, bad_json_detail(path, message))
    # X-Forwarded-For from an untrusted peer is not believed
    resp = await post_feedback(
        client, [item(first, live=f"{ELSEWHERE}/live")], **{"X-Forwarded-For": "10.0.0.7"}
    )
    await expect_error(resp, 400, 12022)
    assert await snapshot(database) == before


async def test_the_agents_own_address_is_accepted(
    client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    (stream_id,) = await claimed_streams(client, 1)
    resp = await post_feedback(client, [item(stream_id, f"{AGENT}/live", f"{AGENT}/frame")])
    assert resp.status == 200, await resp.text()
    doc = await with_report(database, await database.streams.find_one({"_id": stream_id}))
    assert doc is not None
    assert doc["preview"]["live"] == {"url": f"{AGENT}/live"}


async def test_agent_networks_and_trusted_proxies(
    client_with: Any, database: Database, queue_worker: FeedbackWorker
) -> None:
    networks = await client_with(preview_agent_networks="10.0.0.0/24")
    (stream_id,) = await claimed_streams(networks, 1)
    resp = await post_feedback(networks, [item(stream_id, live=f"{ELSEWHERE}/live")])
    assert resp.status == 200, await resp.text()
    resp = await post_feedback(networks, [item(stream_id, live="http://10.0.1.7:34569/live")])
    await expect_error(resp, 400, 12022)

    proxied = await client_with(trusted_proxies="127.0.0.0/8")
    xff = {"X-Forwarded-For": "10.0.0.7, 127.0.0.2"}  # the agent, then a second proxy
    resp = await post_feedback(proxied, [item(stream_id, live=f"{ELSEWHERE}/live")], **xff)
    assert resp.status == 200, await resp.text()
    # behind a proxy, the proxy's own address is not the agent's
    resp = await post_feedback(proxied, [item(stream_id, live=f"{AGENT}/live")], **xff)
    await expect_error(resp, 400, 12022)
    doc = await with_report(database, await database.streams.find_one({"_id": stream_id}))
    assert doc is not None and doc["preview"]["live"] == {"url": f"{ELSEWHERE}/live"}
