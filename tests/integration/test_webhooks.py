"""Webhooks end to end: a real receiving HTTP server on loopback, the gateway in this
process, the autorestart worker (which dispatches and delivers) as a real process.

The tests allow 127.0.0.0/8 (``LUNA_STREAMS_WEBHOOK_ALLOWED_NETWORKS``) to reach their
receiver; without it a loopback target is refused.
"""

from __future__ import annotations

import asyncio
import time
from ipaddress import ip_network
from itertools import pairwise
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import ACCOUNT, OTHER_ACCOUNT, expect_error, v1_body
from tests.integration.webhook_receiver import Receiver, receiver, signature_valid
from tests.processes import running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

Client = TestClient[Any, Any]
SECRET = "a-secret-of-the-receiver"
BODY_KEYS = {
    "event",
    "stream_id",
    "account_id",
    "name",
    "old_status",
    "new_status",
    "version",
    "error",
    "time",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Loopback allowed; quick periods and retries; handler_lost after 2 s of silence."""
    return settings.model_copy(
        update={
            "webhook_allowed_networks": (ip_network("127.0.0.0/8"),),
            "webhook_interval": 0.2,
            "webhook_retry_delay": 0.3,
            "webhook_timeout": 2.0,
            "webhook_max_attempts": 5,
            "autorestart_sweep_interval": 0.5,
            "reconcile_interval": 1.0,
            "change_sweep_interval": 1.0,
            "change_sweep_delay": 2.0,
            "stream_status_obsoleting_interval": 0.5,
            "stream_status_obsoleting_period": 2.0,
            "shutdown_timeout": 5.0,
        }
    )


async def register(
    client: Client, url: str, events: list[str], account_id: str = ACCOUNT, **more: Any
) -> str:
    resp = await client.post(
        "/1/webhooks",
        json={"account_id": account_id, "url": url, "events": events, "secret": SECRET, **more},
    )
    answer = await resp.json()
    assert resp.status == 201, answer
    assert set(answer) == {"webhook_id"}
    return str(answer["webhook_id"])


async def create(client: Client, **fields: Any) -> str:
    resp = await client.post("/1/streams", json=v1_body(name="cam-1", **fields))
    answer = await resp.json()
    assert resp.status == 201, answer
    return str(answer["stream_id"])


async def claim(client: Client, stream_id: str) -> None:
    async def claimed() -> bool:
        resp = await client.post(
            "/1/streams/processing/queue",
            json={"filters": {"stream_ids": [stream_id]}, "limit": 1},
        )
        answer = await resp.json()
        assert resp.status == 200, answer
        return [s["stream_id"] for s in answer["streams"]] == [stream_id]

    await wait_for(claimed, timeout=15)


async def report(client: Client, stream_id: str, status: str, version: int = 1) -> None:
    item = {"stream_id": stream_id, "status": status, "version": version}
    if status == "failure":
        item["error"] = "connection lost"
    resp = await client.post("/1/streams/processing/feedback", json={"streams": [item]})
    answer = await resp.json()
    assert resp.status == 200, answer
    assert [m["stream_id"] for m in answer["streams"]["modified"]] == [stream_id], answer


async def deliveries(client: Client, webhook_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/1/webhooks/{webhook_id}/deliveries")
    answer = await resp.json()
    assert resp.status == 200, answer
    found: list[dict[str, Any]] = answer["deliveries"]
    return found


async def wait_received(
    hooks: Receiver,
    path: str,
    count: int,
    timeout: float = 20,  # noqa: ASYNC109 - a polling deadline, as wait_for's
) -> None:
    async def arrived() -> bool:
        return len(hooks.at(path)) >= count

    await wait_for(arrived, timeout=timeout, interval=0.05)


def assert_signed(received: Any, event: str, stream_id: str, **expected: Any) -> dict[str, Any]:
    assert signature_valid(SECRET, received), received.headers
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Luna-Streams-Event"] == event
    body: dict[str, Any] = received.json
    assert set(body) == BODY_KEYS
    assert (body["event"], body["stream_id"], body["account_id"]) == (event, stream_id, ACCOUNT)
    for key, value in expected.items():
        assert body[key] == value, (key, body)
    return body


async def test_a_failure_delivers_one_signed_webhook(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    async with receiver() as hooks:
        webhook_id = await register(client, f"{hooks.url}/ok", ["failure"])
        stream_id = await create(client)
        with running(worker("autorestart_worker", settings)):
            await claim(client, stream_id)
            await report(client, stream_id, "failure")
            await wait_received(hooks, "/ok", 1)
            await asyncio.sleep(1.0)  # nothing else comes: one delivery, one event
            [got] = hooks.at("/ok")
            assert_signed(
                got,
                "failure",
                stream_id,
                name="cam-1",
                old_status="in_progress",
                new_status="failure",
                version=1,
                error="connection lost",
            )
            # a tampered body or another secret does not verify
            got.body = got.body.replace(b"failure", b"done")
            assert not signature_valid(SECRET, got)

            async def recorded() -> bool:
                found = await deliveries(client, webhook_id)
                return bool(found) and found[0]["state"] == "delivered"

            await wait_for(recorded, timeout=10)
            [delivery] = await deliveries(client, webhook_id)
            assert (delivery["event"], delivery["attempts"], delivery["status_code"]) == (
                "failure",
                1,
                204,
            )
            assert delivery["delivered_time"] is not None


async def test_handler_lost_delivers_one_signed_webhook(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    async with receiver() as hooks:
        await register(client, f"{hooks.url}/ok", ["handler_lost"])
        stream_id = await create(client)
        with running(worker("autorestart_worker", settings)):
            await claim(client, stream_id)  # then silence: handler_lost after 2 s
            await wait_received(hooks, "/ok", 1)
            await asyncio.sleep(1.0)
            [got] = hooks.at("/ok")
            assert_signed(
                got, "handler_lost", stream_id, old_status="in_progress", new_status="handler_lost"
            )


async def test_an_exhausted_autorestart_delivers_one_signed_webhook(
    settings: Settings, client: Client, database: Database, queue_worker: FeedbackWorker
) -> None:
    async with receiver() as hooks:
        await register(client, f"{hooks.url}/ok", ["autorestart_exhausted"])
        stream_id = await create(client, autorestart={"restart": 1, "attempt_count": 1, "delay": 1})
        with running(worker("autorestart_worker", settings)):
            await claim(client, stream_id)
            await report(client, stream_id, "failure")  # attempt 1 armed: not exhausted
            await claim(client, stream_id)  # restarted after 1 s, claimed again
            await report(client, stream_id, "failure")  # no attempt left
            await wait_received(hooks, "/ok", 1)
            await asyncio.sleep(1.0)
            [got] = hooks.at("/ok")
            assert_signed(
                got,
                "autorestart_exhausted",
                stream_id,
                old_status="in_progress",
                new_status="failure",
            )


async def test_a_receiver_failing_three_times_gets_the_delivery_on_the_fourth_try(
    settings: Settings, client: Client, database: Database
) -> None:
    async with receiver(fail_first=3) as hooks:
        webhook_id = await register(client, f"{hooks.url}/flaky", ["created"])
        stream_id = await create(client)
        with running(worker("autorestart_worker", settings)):
            await wait_received(hooks, "/flaky", 4)

            async def delivered() -> bool:
                found = await deliveries(client, webhook_id)
                return bool(found) and found[0]["state"] == "delivered"

            await wait_for(delivered, timeout=10)
        tries = hooks.at("/flaky")
        assert len(tries) == 4
        assert len({t.headers["X-Luna-Streams-Delivery"] for t in tries}) == 1
        for got in tries:
            assert_signed(got, "created", stream_id, old_status=None, new_status="pending")
        gaps = [b.at - a.at for a, b in pairwise(tries)]
        assert all(gap >= 0.2 for gap in gaps), gaps  # backoff: not at once
        assert gaps[2] > gaps[0], gaps  # and growing
        [delivery] = await deliveries(client, webhook_id)
        assert (delivery["attempts"], delivery["status_code"], delivery["error"]) == (4, 200, None)


async def test_a_delivery_is_failed_after_the_last_attempt(
    settings: Settings, client: Client, database: Database
) -> None:
    bounded = settings.model_copy(update={"webhook_max_attempts": 2})
    async with receiver(fail_first=100) as hooks:
        webhook_id = await register(client, f"{hooks.url}/flaky", ["created"])
        await create(client)
        with running(worker("autorestart_worker", bounded)):

            async def failed() -> bool:
                found = await deliveries(client, webhook_id)
                return bool(found) and found[0]["state"] == "failed"

            await wait_for(failed, timeout=15)
            await asyncio.sleep(1.5)
        assert len(hooks.at("/flaky")) == 2
        [delivery] = await deliveries(client, webhook_id)
        assert (delivery["attempts"], delivery["status_code"]) == (2, 500)
        assert delivery["error"] == "answered HTTP 500"
        assert delivery["next_attempt_time"] is None


async def test_a_receiver_that_hangs_does_not_delay_the_others(
    settings: Settings, client: Client, database: Database
) -> None:
    async with receiver(hang_for=30) as hooks:
        await register(client, f"{hooks.url}/hang", ["created", "pause"])
        await register(client, f"{hooks.url}/ok", ["created", "pause"])
        with running(worker("autorestart_worker", settings)):
            first = await create(client)
            await wait_received(hooks, "/ok", 1)
            await wait_received(hooks, "/hang", 1)
            # the hanging receiver holds its attempt (2 s timeout) and is retried; the
            # other gets every later event at once
            started = time.monotonic()
            resp = await client.patch(f"/1/streams/{first}", json={"status": "pause"})
            assert resp.status == 204
            await wait_received(hooks, "/ok", 2, timeout=10)
            assert hooks.at("/ok")[1].at - started < 1.5
            assert [r.json["event"] for r in hooks.at("/ok")] == ["created", "pause"]


async def test_an_internal_address_is_refused_unless_its_network_is_allowed(
    settings: Settings, client: Client, database: Database
) -> None:
    # the tests' own gateway allows 127.0.0.0/8; one with the default allows nothing internal
    default = settings.model_copy(update={"webhook_allowed_networks": ()})
    async with TestClient(TestServer(create_app(default))) as strict:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/hook",
            "http://[::ffff:192.168.0.1]/hook",
            "http://100.64.0.1/hook",
            "http://localhost/hook",
        ):
            resp = await strict.post(
                "/1/webhooks", json={"account_id": ACCOUNT, "url": url, "events": ["failure"]}
            )
            answer = await expect_error(resp, 400, 12022)
            assert "url" in answer["detail"], answer
        for url, why in (
            ("ftp://203.0.113.9/hook", "scheme"),
            ("http://user:pw@127.0.0.1/hook", "user info"),
            ("http://0.0.0.0/hook", "host"),
        ):
            resp = await client.post(
                "/1/webhooks", json={"account_id": ACCOUNT, "url": url, "events": ["failure"]}
            )
            answer = await expect_error(resp, 400, 12022)
            assert why in answer["detail"], answer
    assert await database.webhooks.count_documents({}) == 0


async def test_no_delivery_is_lost_when_the_worker_is_killed_mid_delivery(
    settings: Settings, client: Client, database: Database
) -> None:
    """The receiver holds the first attempt; the worker is killed while it waits; a new
    worker attempts it again once its lease runs out, and it arrives."""
    async with receiver(hang_for=1.5) as hooks:
        webhook_id = await register(client, f"{hooks.url}/hang", ["created"])
        stream_id = await create(client)
        first = worker("autorestart_worker", settings)
        with running(first):
            await wait_received(hooks, "/hang", 1)
            first.kill()
        found = await database.webhook_deliveries.find_one({"webhook_id": webhook_id})
        assert found is not None and found["state"] == "delivering"
        with running(worker("autorestart_worker", settings)):

            async def delivered() -> bool:
                found = await deliveries(client, webhook_id)
                return bool(found) and found[0]["state"] == "delivered"

            await wait_for(delivered, timeout=20)
        tries = hooks.at("/hang")
        assert len(tries) == 2
        for got in tries:
            assert_signed(got, "created", stream_id)
        assert (
            tries[0].headers["X-Luna-Streams-Delivery"]
            == tries[1].headers["X-Luna-Streams-Delivery"]
        )


async def test_the_webhook_api(settings: Settings, client: Client, database: Database) -> None:
    async with receiver() as hooks:
        resp = await client.post(
            "/1/webhooks",
            json={
                "account_id": ACCOUNT,
                "url": f"{hooks.url}/ok",
                "events": ["failure", "deleted"],
                "description": "pager",
                "groups": ["lobby"],
            },
        )
        made = await resp.json()
        assert resp.status == 201, made
        assert made["secret"].startswith("whsec_")  # made, shown once
        webhook_id = made["webhook_id"]
        other = await register(client, f"{hooks.url}/ok", ["done"], account_id=OTHER_ACCOUNT)

        resp = await client.get(f"/2/webhooks/{webhook_id}")
        view = await resp.json()
        assert resp.status == 200, view
        assert view == {
            "webhook_id": webhook_id,
            "account_id": ACCOUNT,
            "url": f"{hooks.url}/ok",
            "events": ["failure", "deleted"],
            "groups": ["lobby"],
            "description": "pager",
            "create_time": view["create_time"],
        }
        resp = await client.get("/1/webhooks", params={"account_id": ACCOUNT})
        assert [w["webhook_id"] for w in (await resp.json())["webhooks"]] == [webhook_id]
        # another account's webhook is not found through this account
        resp = await client.get(f"/1/webhooks/{other}", params={"account_id": ACCOUNT})
        await expect_error(resp, 404, 12044)
        resp = await client.delete(f"/1/webhooks/{other}", params={"account_id": ACCOUNT})
        await expect_error(resp, 404, 12044)
        # bad input writes nothing
        for bad in (
            {"account_id": ACCOUNT, "url": f"{hooks.url}/ok", "events": []},
            {"account_id": ACCOUNT, "url": f"{hooks.url}/ok", "events": ["restart"]},
            {"account_id": ACCOUNT, "url": f"{hooks.url}/ok", "events": ["done"], "secret": "x"},
            {"account_id": ACCOUNT, "url": f"{hooks.url}/ok", "events": ["done"], "extra": 1},
        ):
            resp = await client.post("/1/webhooks", json=bad)
            await expect_error(resp, 400, 12022)
        assert await database.webhooks.count_documents({}) == 2
        # a test delivery, sent by the worker
        resp = await client.post(f"/1/webhooks/{webhook_id}/test")
        queued = await resp.json()
        assert resp.status == 202, queued
        with running(worker("autorestart_worker", settings)):
            await wait_received(hooks, "/ok", 1)
        [got] = hooks.at("/ok")
        assert got.json["event"] == "test"
        assert signature_valid(made["secret"], got)
        resp = await client.delete(f"/1/webhooks/{webhook_id}")
        assert resp.status == 204
        resp = await client.get(f"/1/webhooks/{webhook_id}/deliveries")
        await expect_error(resp, 404, 12044)
        assert await database.webhook_deliveries.count_documents({"webhook_id": webhook_id}) == 0
        # no secret anywhere in what the API shows
        resp = await client.get("/1/webhooks")
        assert "secret" not in await resp.text()
