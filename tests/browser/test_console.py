"""The operator console in a real browser: what an operator does, end to end.

Add a stream through the form (a validation error shown at its field first), find it in the
list, pause it, see changes made through the API arrive without a reload, attach it to a
group, see it pending in the Queue tab, delete it. The page asks nothing of another origin
and logs no error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.integration.factories import ACCOUNT, HANDLER_ID, TOKEN

Client = TestClient[Any, Any]
TIMEOUT = 15_000


async def _api_patch(client: Client, stream_id: str, status: str) -> None:
    resp = await client.patch(f"/1/streams/{stream_id}", json={"status": status})
    assert resp.status == 204, await resp.text()


async def test_operator_workflow(client: Client, browser: Any) -> None:
    base = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    refused: list[tuple[str, str, int]] = []
    page.on(
        "response",
        lambda r: (
            refused.append((r.request.method, r.url.removeprefix(base), r.status))
            if r.status >= 400
            else None
        ),
    )

    await page.goto(f"{base}/?account_id={ACCOUNT}")
    live = page.locator("#live")
    await live.filter(has_text=re.compile("^Live$")).wait_for()
    await page.evaluate("window.__notReloaded = true")
    assert await page.locator("#account-id").input_value() == ACCOUNT

    # Add, with an invalid handler id first: the API's error shows at that field
    await page.get_by_role("button", name="Add stream").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Name", exact=True).fill("entrance-1")
    await dialog.get_by_label("Reference (URL or path)").fill("rtsp://192.0.2.10/1")
    handler = dialog.get_by_label("Best shot handler ID")
    await handler.fill("not-a-uuid")
    await dialog.get_by_label("Authorization token").fill(TOKEN)
    await dialog.get_by_label("City").fill("Springfield")
    await dialog.get_by_label("Latitude").fill("55.75")
    await dialog.get_by_label("Longitude").fill("37.61")
    await dialog.get_by_role("button", name="Add").click()
    await page.wait_for_function(
        "document.activeElement && document.activeElement.getAttribute('aria-invalid')"
    )
    assert await handler.get_attribute("aria-invalid") == "true"
    described = await handler.get_attribute("aria-describedby")
    message = await page.locator(f"#{described}").inner_text()
    assert "not-a-uuid" in message, message
    await handler.fill(HANDLER_ID)
    await dialog.get_by_role("button", name="Add").click()
    await dialog.wait_for(state="detached")

    # find it in the list
    row = page.locator("tbody tr", has=page.locator("td.name", has_text="entrance-1"))
    await row.locator(".badge", has_text="pending").wait_for()
    stream_id = (await row.get_attribute("data-stream-id")) or ""
    assert re.fullmatch(r"[0-9a-f-]{36}", stream_id)

    # pause it from the console, then changes made through the API arrive live
    await page.get_by_role("button", name="Pause entrance-1").click()
    await row.locator(".badge", has_text="pause").wait_for()
    await _api_patch(client, stream_id, "pending")
    await row.locator(".badge", has_text="pending").wait_for()

    # Groups: create one, attach the stream, see it among the members
    await page.get_by_role("link", name="Groups").click()
    await page.get_by_label("Group name").fill("lobby")
    await page.get_by_label("Description").first.fill("front door cameras")
    await page.get_by_role("button", name="Create group").click()
    group = page.locator("details", has=page.locator("summary", has_text="lobby"))
    await group.locator("summary").click()
    await group.get_by_label("Stream IDs to attach to lobby").fill(stream_id)
    await group.get_by_role("button", name="Attach", exact=True).click()
    await group.get_by_role("button", name="Detach entrance-1 from lobby").wait_for()

    # Queue: the pending stream, in queue order
    await page.get_by_role("link", name="Queue").click()
    queued = page.locator(f'tr[data-stream-id="{stream_id}"]')
    await queued.locator(".badge", has_text="pending").wait_for()

    # Overview: counts by status
    await page.get_by_role("link", name="Overview").click()
    await page.locator('.card[data-status="pending"] .n', has_text="1").wait_for()

    # back to Streams: an agent claims it (through the API), the badge follows
    await page.get_by_role("link", name="Streams").click()
    await row.locator("td", has_text="lobby").wait_for()
    resp = await client.post("/1/streams/processing/queue", json={"filters": {}, "limit": 1})
    assert [s["stream_id"] for s in (await resp.json())["streams"]] == [stream_id]
    await row.locator(".badge", has_text="in progress").wait_for()

    # the stream page: settings, logs newest first
    await row.get_by_role("link", name="View entrance-1").click()
    await page.get_by_role("heading", name="Stream entrance-1").wait_for()
    await page.locator("pre.settings", has_text="Springfield").wait_for()
    assert await page.get_by_role("button", name="Pause entrance-1").is_enabled()
    assert await page.get_by_role("button", name="Start entrance-1").is_disabled()
    statuses = page.locator("table tbody tr td:nth-child(2) .badge")
    await statuses.first.filter(has_text="in progress").wait_for()
    logged = [text.strip() for text in await statuses.all_inner_texts()]
    assert logged[:4] == ["in progress", "pending", "pause", "pending"], logged

    # delete, confirming
    await page.get_by_role("link", name="← All streams").click()
    await page.get_by_role("button", name="Delete entrance-1").click()
    confirm = page.get_by_role("dialog")
    await confirm.get_by_role("button", name="Delete").click()
    await row.wait_for(state="detached")
    resp = await client.get(f"/1/streams/{stream_id}")
    assert resp.status == 404

    assert await page.evaluate("window.__notReloaded") is True
    foreign = [url for url in requests if not url.startswith(base + "/")]
    assert foreign == []
    # the one refusal is the invalid handler id; Chromium logs each refused fetch
    assert refused == [("POST", "/1/streams", 400)]
    expected = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert problems == [expected], problems
    await page.close()


async def test_accounts_in_the_url(client: Client, browser: Any) -> None:
    """The account in the URL wins, the last one is remembered, and 'All accounts' clears it."""
    base = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto(f"{base}/?account_id={ACCOUNT}#groups")
    await page.get_by_role("heading", name="Groups").wait_for()
    assert await page.locator("#account-id").input_value() == ACCOUNT
    await page.goto(f"{base}/")
    assert await page.locator("#account-id").input_value() == ACCOUNT  # remembered
    assert f"account_id={ACCOUNT}" in page.url
    await page.get_by_role("button", name="All accounts").click()
    await page.wait_for_function("!location.search.includes('-')")
    assert await page.locator("#account-id").input_value() == ""
    await page.goto(f"{base}/")
    assert await page.locator("#account-id").input_value() == ""
    await page.close()


async def test_root_without_html_is_still_a_json_404(client: Client) -> None:
    resp = await client.get("/", headers={"Accept": "application/json"})
    assert resp.status == 404
    assert (await resp.json())["error_code"] == 12013
    resp = await client.get("/", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    resp = await client.get("/console/app.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    resp = await client.get("/console/..%2Fconsole.py")
    assert resp.status == 404


async def test_json_editor_and_edit(client: Client, browser: Any) -> None:
    """Add a v2 stream as JSON (an error shown with its path first), then edit it (PUT)."""
    base = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{base}/?account_id={ACCOUNT}")
    await page.get_by_role("button", name="Add stream").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("button", name="Edit as JSON").click()
    await dialog.get_by_label("API version of the body").select_option("2")
    given = {
        "account_id": ACCOUNT,
        "name": "json-cam",
        "data": {
            "type": "tcp",
            "reference": "rtsp://192.0.2.20/1",
            "analytics": [
                {"event_handler": {"handler_id": HANDLER_ID, "authorization": {"token": TOKEN}}}
            ],
        },
    }
    body = json.dumps({**given, "unknown": 1})
    editor = dialog.get_by_label("Request body (JSON)")
    await editor.fill(body)
    await dialog.get_by_role("button", name="Add").click()
    error = dialog.locator(".form-error[role=alert]", has_text="unknown")
    await error.wait_for()
    assert "Additional properties are not allowed" in await error.inner_text()
    await editor.fill(json.dumps(given))
    await dialog.get_by_role("button", name="Add").click()
    await dialog.wait_for(state="detached")
    row = page.locator("tbody tr", has=page.locator("td.name", has_text="json-cam"))
    await row.wait_for()
    stream_id = await row.get_attribute("data-stream-id")

    await page.get_by_role("button", name="Edit json-cam").click()
    dialog = page.get_by_role("dialog")
    name = dialog.get_by_label("Name", exact=True)
    assert await name.input_value() == "json-cam"
    await name.fill("json-cam-2")
    await dialog.get_by_label("Initial status").select_option("pause")
    await dialog.get_by_role("button", name="Save").click()
    await dialog.wait_for(state="detached")
    renamed = page.locator(f'tr[data-stream-id="{stream_id}"]')
    await renamed.locator("td.name", has_text="json-cam-2").wait_for()
    await renamed.locator(".badge", has_text="pause").wait_for()
    resp = await client.get(f"/2/streams/{stream_id}")
    stream = await resp.json()
    assert (stream["name"], stream["version"], stream["status"]) == ("json-cam-2", 2, "pause")
    assert stream["data"]["reference"] == "rtsp://192.0.2.20/1"
    assert problems == []
    await page.close()


async def test_sign_in_with_a_token(settings: Any, database: Any, browser: Any) -> None:
    """Authentication on: the console asks for a token, keeps it in its HttpOnly cookie
    (the page cannot read it), shows who is signed in, and changes streams with the CSRF
    header; signing out asks again."""
    from shared.domain.roles import Role
    from tests.fast.test_auth import open_stack
    from tests.integration.factories import create_stream, v1_body

    async with open_stack(settings, database) as stack:
        admin = await stack.as_role(Role.ADMIN)
        stream_id = await create_stream(admin, v1_body(name="door-7"))
        token = await stack.token(Role.OPERATOR, ACCOUNT, name="night shift")
        base = str(stack.server.make_url("")).rstrip("/")
        page = await browser.new_page()
        page.set_default_timeout(TIMEOUT)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))

        await page.goto(f"{base}/")
        form = page.get_by_role("form", name="Sign in")
        await form.get_by_label("API token").fill("lst_not-a-token")
        await form.get_by_role("button", name="Sign in").click()
        await page.locator("#sign-in-error").filter(has_text="not valid").wait_for()

        await form.get_by_label("API token").fill(token)
        await form.get_by_role("button", name="Sign in").click()
        await page.locator("#identity-text").filter(has_text="night shift (operator)").wait_for()
        assert await page.locator("#account-id").input_value() == ACCOUNT
        assert "luna_streams_token" not in await page.evaluate("document.cookie")
        await page.get_by_role("button", name="Pause door-7").click()
        stored = await stack.database.streams.find_one({"_id": stream_id})
        for _ in range(50):
            stored = await stack.database.streams.find_one({"_id": stream_id})
            if stored and stored["status"] == "pause":
                break
            await page.wait_for_timeout(100)
        assert stored is not None and stored["status"] == "pause"

        await page.get_by_role("button", name="Sign out").click()
        await page.get_by_role("form", name="Sign in").wait_for()
        assert not problems, problems
