"""``make screenshots``: the console's tabs as PNGs in ``docs/`` (shown in the README).

Starts the services as the tests do (tests/services.py), a gateway and a feedback worker on
a database of their own, a small "agent" that serves last frames, adds sample streams
through the API (claims and feedback included), and photographs each tab in the system
Chromium.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.mongo import open_database
from tests.browser.conftest import chromium_path
from tests.integration.factories import ACCOUNT, v1_body
from tests.isolation import delete_queues
from tests.services import mongo_server, rabbitmq_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
SIZE = {"width": 1280, "height": 860}
CITIES = [
    ("Springfield", 55.751, 37.618),
    ("Springfield", 55.757, 37.601),
    ("Shelbyville", 55.741, 37.633),
    ("Shelbyville", 55.735, 37.611),
    ("Ogdenville", 55.766, 37.642),
]


def frame(label: str) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180">'
        '<rect width="320" height="180" fill="#2d4a63"/><circle cx="250" cy="60" r="28" '
        'fill="#f2c14e"/><rect y="120" width="320" height="60" fill="#3f6b3a"/>'
        f'<text x="12" y="30" fill="#fff" font-size="20" font-family="sans-serif">{label}</text>'
        "</svg>"
    ).encode()


async def agent() -> TestServer:
    async def last_frame(request: web.Request) -> web.Response:
        return web.Response(body=frame(request.match_info["name"]), content_type="image/svg+xml")

    app = web.Application()
    app.router.add_get("/frame/{name}", last_frame)
    server = TestServer(app)
    await server.start_server()
    return server


async def seed(client: TestClient[Any, Any], frames: TestServer) -> str:
    async def ok(resp: Any, status: int = 200) -> Any:
        assert resp.status == status, await resp.text()
        return await resp.json() if resp.content_type == "application/json" else None

    await ok(
        await client.post(
            "/1/groups",
            json={
                "account_id": ACCOUNT,
                "group_name": "entrance",
                "description": "doors and gates",
            },
        ),
        201,
    )
    await ok(
        await client.post("/1/groups", json={"account_id": ACCOUNT, "group_name": "parking"}), 201
    )
    ids = []
    for n in range(14):
        city, lat, lon = CITIES[n % len(CITIES)]
        body = v1_body(
            name=f"camera-{n + 1:02d}",
            reference=f"rtsp://192.0.2.{10 + n}/stream1",
            description=f"{city}, gate {n % 4 + 1}",
            location={
                "city": city,
                "geo_position": {"latitude": lat + n * 0.001, "longitude": lon - n * 0.0015},
            },
            group_name="entrance" if n % 3 else "parking",
            autorestart={"restart": 1, "attempt_count": 5, "delay": 30},
        )
        ids.append((await ok(await client.post("/1/streams", json=body), 201))["stream_id"])
    claimed = (
        await ok(await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": 7}))
    )["streams"]
    reports = []
    for n, stream in enumerate(claimed):
        status = "failure" if n == 5 else "done" if n == 6 else "in_progress"
        reports.append(
            {
                "stream_id": stream["stream_id"],
                "version": stream["version"],
                "status": status,
                "error": "source unreachable" if status == "failure" else None,
                "video_info": {
                    "bit_rate": 2_000_000,
                    "frame_rate": 25,
                    "width": 1920,
                    "height": 1080,
                    "gop_size": 50,
                    "start_time": "2026-12-01T20:00:00Z",
                },
                "preview": {
                    "last_frame": {"url": f"{frames.make_url('/frame/')}{stream['name']}"},
                    "live": None,
                },
            }
        )
    await ok(await client.post("/1/streams/processing/feedback", json={"streams": reports}))
    for stream_id, status in ((ids[8], "pause"), (ids[9], "cancel")):
        await ok(await client.patch(f"/1/streams/{stream_id}", json={"status": status}), 204)
    return str(claimed[0]["stream_id"])


async def photograph(base: str, stream_id: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        page = await browser.new_page(viewport=SIZE)
        shots = [
            ("streams", "#streams"),
            ("groups", "#groups"),
            ("queue", "#queue"),
            ("overview", "#overview"),
            ("stream", f"#stream/{stream_id}"),
        ]
        for name, hash_ in shots:
            await page.goto(f"{base}/?account_id={ACCOUNT}{hash_}")
            await page.locator("#live.on").wait_for()
            if name == "groups":
                await page.locator("details summary").first.click()
            await page.wait_for_timeout(1200)
            await page.screenshot(path=DOCS / f"console-{name}.png")
            print(f"docs/console-{name}.png")
        await browser.close()


async def main(mongo_uri: str, amqp_url: str) -> None:
    tag = uuid.uuid4().hex[:12]
    settings = Settings(
        mongo_uri=mongo_uri, amqp_url=amqp_url, db_name=f"shots_{tag}", queue_prefix=f"shots_{tag}"
    )
    worker = FeedbackWorker(settings)
    await worker.start()
    frames = await agent()
    try:
        async with TestClient(TestServer(create_app(settings))) as client:
            stream_id = await seed(client, frames)
            await photograph(str(client.make_url("")).rstrip("/"), stream_id)
    finally:
        await frames.close()
        await worker.stop(timeout=5)
        database = await open_database(mongo_uri, settings.db_name, ensure_indexes=False)
        group_ids = [doc["_id"] async for doc in database.groups.find({}, {"_id": 1})]
        await database.client.drop_database(settings.db_name)
        await database.close()
        names = QueueNames(settings.queue_prefix)
        await delete_queues(amqp_url, names.every(group_ids))


if __name__ == "__main__":
    if chromium_path() is None:
        sys.exit("no Chromium: apt-get install chromium chromium-driver")
    with mongo_server() as mongo, rabbitmq_server() as amqp:
        asyncio.run(main(mongo, amqp))
