"""The console's Webhooks tab and bulk actions in a real browser.

Webhooks: add one for a receiver on loopback (the gateway here allows 127.0.0.0/8), see it
listed, send it a test (delivered by the worker's delivery pool, run here), see the
delivery with its status code and attempts, delete it. Bulk: tick streams and pause them,
start every stream matching the filters (the one already pending is skipped, said so),
delete the ticked ones after confirming.
"""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from shared.core.settings import Settings
from shared.services.webhooks.delivery import DeliveryPool
from shared.store.mongo import Database
from tests.integration.factories import ACCOUNT, v1_body
from tests.integration.webhook_receiver import receiver, signature_valid
from tests.waits import wait_for

Client = TestClient[Any, Any]
TIMEOUT = 15_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_networks": (ip_network("127.0.0.0/8"),)})


async def _page(client: Client, browser: Any, where: str) -> tuple[Any, list[str]]:
    base = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    await page.goto(f"{base}/?account_id={ACCOUNT}{where}")
    return page, problems


async def test_webhooks_tab(
    settings: Settings, client: Client, database: Database, browser: Any
) -> None:
    async with receiver() as hooks:
        page, problems = await _page(client, browser, "#webhooks")
        await page.get_by_role("heading", name="Webhooks").wait_for()
        form = page.get_by_role("form", name="Add a webhook")
        await form.get_by_label("Webhook URL").fill(f"{hooks.url}/ok")
        await form.get_by_label("Description").fill("pager <b>duty</b>")
        await form.get_by_label("handler_lost").check()
        await form.get_by_role("button", name="Add webhook").click()
        shown = page.locator("p[role=status]", has_text="Secret (shown once")
        await shown.wait_for()
        secret = (await shown.inner_text()).rsplit(": ", 1)[1]
        card = page.locator("section.card", has_text=f"{hooks.url}/ok")
        await card.locator("p", has_text="Events: failure, handler_lost").wait_for()
        # a description is text, never markup
        assert await card.locator("b").count() == 0
        [hook] = await database.webhooks.find({}).to_list()
        assert hook["events"] == ["failure", "handler_lost"] and hook["secret"] == secret

        await card.get_by_role("button", name="Deliveries of pager <b>duty</b>").click()
        await card.get_by_text("No deliveries yet").wait_for()
        await card.get_by_role("button", name="Send a test to pager <b>duty</b>").click()
        await page.locator("#notice", has_text="Test delivery queued").wait_for()
        pool = DeliveryPool(settings)
        try:

            async def delivered() -> bool:
                await pool.run(database)
                return bool(hooks.at("/ok"))

            await wait_for(delivered, timeout=10)

            async def recorded() -> bool:
                return bool(
                    await database.webhook_deliveries.count_documents({"state": "delivered"})
                )

            await wait_for(recorded, timeout=10)
        finally:
            await pool.close(2)
        assert signature_valid(secret, hooks.at("/ok")[0])
        # reopen: the delivery, its status code and attempts
        toggle = card.get_by_role("button", name="Deliveries of pager <b>duty</b>")
        await toggle.click()
        await toggle.click()
        delivery = card.locator("tbody tr")
        await delivery.locator(".badge", has_text="delivered").wait_for()
        assert await delivery.locator("td.code").inner_text() == "204"
        assert await delivery.locator("td.attempts").inner_text() == "1"

        # a refused URL: the error at its field
        await form.get_by_label("Webhook URL").fill("http://user:pw@10.0.0.1/hook")
        await form.get_by_role("button", name="Add webhook").click()
        await page.locator(".form-error", has_text="url: URL must not carry user info").wait_for()

        await card.get_by_role("button", name="Delete webhook pager <b>duty</b>").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        await card.wait_for(state="detached")
        assert await database.webhooks.count_documents({}) == 0
        assert [p for p in problems if "400" not in p] == []
        await page.close()


async def test_bulk_actions(client: Client, database: Database, browser: Any) -> None:
    ids = []
    for n in range(3):
        resp = await client.post("/1/streams", json=v1_body(name=f"bulk-{n}"))
        assert resp.status == 201
        ids.append((await resp.json())["stream_id"])
    page, problems = await _page(client, browser, "#streams")
    await page.get_by_role("checkbox", name="Select bulk-0").check()
    await page.get_by_role("checkbox", name="Select bulk-1").check()
    bar = page.get_by_role("group", name="Bulk actions")
    await bar.get_by_text("2 selected").wait_for()
    await bar.get_by_role("button", name="Pause selected").click()
    await page.locator("#notice", has_text="Paused 2 streams").wait_for()
    statuses = {d["_id"]: d["status"] async for d in database.streams.find({}, {"status": 1})}
    assert statuses == {ids[0]: "pause", ids[1]: "pause", ids[2]: "pending"}

    # every stream matching the filters (none set: all three); the pending one is skipped
    await bar.get_by_label("Every stream matching the filters").check()
    await bar.get_by_text("All 3 matching").wait_for()
    await bar.get_by_role("button", name="Start selected").click()
    await page.locator(
        "#notice", has_text=re.compile(r"Started 2 streams; 1 skipped \(already in that status\)")
    ).wait_for()
    assert await database.streams.count_documents({"status": "pending"}) == 3

    await page.get_by_role("checkbox", name="Select bulk-2").check()
    await bar.get_by_role("button", name="Delete selected").click()
    await (
        page.get_by_role("dialog", name="Delete 1 stream?")
        .get_by_role("button", name="Delete")
        .click()
    )
    await page.locator("#notice", has_text="Deleted 1 stream").wait_for()
    await page.locator("td.name", has_text="bulk-2").wait_for(state="detached")
    left = await database.streams.find({}, {"_id": 1}).to_list()
    assert sorted(d["_id"] for d in left) == sorted(ids[:2])
    assert problems == []
    await page.close()
