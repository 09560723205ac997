"""Authentication on (LUNA_STREAMS_AUTH=on): tokens, roles, account scope, agent networks,
the failure throttle, the console's session with its CSRF check, the audit trail, and no
token in clear in the database or the logs (design.md, invariant 9). The ``tokens`` command:
tests/integration/test_tokens_cli.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.gatekeeper import CSRF_COOKIE, CSRF_HEADER, TOKEN_COOKIE
from shared.core.settings import Settings
from shared.domain.roles import Role
from shared.services.access.credentials import TokenStore, token_hash
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Client,
    create_stream,
    list_ids,
    snapshot,
    v1_body,
)
from tests.stub_broker import StubBroker


class Stack:
    """One gateway with authentication on, and a client per credential."""

    def __init__(self, server: TestServer, database: Database) -> None:
        self.server = server
        self.database = database
        self.store = TokenStore(database)
        self.tokens: dict[str, str] = {}
        self.clients: list[Client] = []

    async def token(
        self, role: Role, account_id: str | None = None, name: str | None = None
    ) -> str:
        _, token = await self.store.create(role, account_id, name)
        return token

    async def client(self, token: str | None = None, **headers: str) -> Client:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client: Client = TestClient(self.server, headers=headers)
        await client.start_server()
        self.clients.append(client)
        return client

    async def as_role(self, role: Role, account_id: str | None = None) -> Client:
        return await self.client(await self.token(role, account_id, name=f"{role.value} test"))


@contextlib.asynccontextmanager
async def open_stack(
    settings: Settings, database: Database, broker: Any = None, **changes: Any
) -> AsyncIterator[Stack]:
    """A gateway with authentication on; ``broker``: an in-memory one (the fast tier's
    :class:`~tests.stub_broker.StubBroker`), else it connects to ``settings.amqp_url``."""
    app = create_app(settings.model_copy(update={"auth": "on", **changes}), broker=broker)
    server = TestServer(app)
    await server.start_server()
    stack = Stack(server, database)
    try:
        yield stack
    finally:
        for client in stack.clients:
            await client.close()
        await server.close()


@pytest.fixture
async def stack(settings: Settings, database: Database, broker: StubBroker) -> AsyncIterator[Stack]:
    async with open_stack(settings, database, broker, auth_max_failures=5) as made:
        yield made


async def _error(resp: Any, status: int, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert body["error_code"] == code, body
    assert set(body) == {"error_code", "desc", "detail", "link"}
    return body


async def test_no_credential_is_401_but_public_routes_answer(stack: Stack) -> None:
    anonymous = await stack.client()
    resp = await anonymous.get("/1/streams")
    await _error(resp, 401, 12040)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await anonymous.post("/1/streams", json=v1_body())
    await _error(resp, 401, 12040)
    for path in ("/version", "/healthcheck", "/console/app.js", "/docs/spec"):
        assert (await anonymous.get(path)).status == 200, path
    page = await anonymous.get("/", headers={"Accept": "text/html"})
    assert page.status == 200
    # nothing was written by the refused create
    assert await stack.database.streams.count_documents({}) == 0


async def test_roles_reach_what_they_are_granted(stack: Stack) -> None:
    viewer = await stack.as_role(Role.VIEWER)
    operator = await stack.as_role(Role.OPERATOR)
    agent = await stack.as_role(Role.AGENT)
    admin = await stack.as_role(Role.ADMIN)

    stream_id = await create_stream(operator, v1_body())
    assert await list_ids(viewer) == [stream_id]
    await _error(await viewer.post("/1/streams", json=v1_body()), 403, 12041)
    await _error(await viewer.delete(f"/1/streams/{stream_id}"), 403, 12041)
    await _error(await agent.get("/1/streams"), 403, 12041)
    await _error(await operator.get("/config"), 403, 12041)
    await _error(
        await operator.post("/1/streams/processing/queue", json={"filters": {}, "limit": 1}),
        403,
        12041,
    )
    assert (await admin.get("/config")).status == 200
    claimed = await agent.post("/1/streams/processing/queue", json={"filters": {}, "limit": 5})
    assert claimed.status == 200
    assert [s["stream_id"] for s in (await claimed.json())["streams"]] == [stream_id]
    me = await (await viewer.get("/1/auth/me")).json()
    assert me == {
        "auth": "on",
        "role": "viewer",
        "account_id": None,
        "token_id": me["token_id"],
        "name": "viewer test",
        "via": "token",
    }


async def test_an_account_token_reaches_its_account_only(stack: Stack) -> None:
    admin = await stack.as_role(Role.ADMIN)
    theirs = await create_stream(admin, v1_body(account_id=OTHER_ACCOUNT))
    mine = await stack.as_role(Role.OPERATOR, ACCOUNT)

    # no account given: the token's; naming another: 403, nothing written
    body = v1_body()
    del body["account_id"]
    own = await create_stream(mine, body)
    await _error(await mine.post("/1/streams", json=v1_body(account_id=OTHER_ACCOUNT)), 403, 12041)
    await _error(await mine.get("/1/streams", params={"account_id": OTHER_ACCOUNT}), 403, 12041)
    assert await list_ids(mine) == [own]
    assert (await mine.get(f"/1/streams/{theirs}")).status == 404
    assert (await mine.delete(f"/1/streams/{theirs}")).status == 404
    assert (await admin.get(f"/1/streams/{theirs}")).status == 200
    # operations without an account scope show every account's streams: refused
    await _error(await mine.get("/1/streams/processing/queue?limit=5"), 403, 12041)
    await _error(await mine.get(f"/2/streams/{own}/preview/last_frame"), 403, 12041)
    assert await stack.database.streams.count_documents({}) == 2
    # only viewer and operator tokens take an account
    refused = await admin.post("/1/tokens", json={"role": "agent", "account_id": ACCOUNT})
    await _error(refused, 400, 12022)


async def test_agent_networks_admit_agents_without_a_token(
    settings: Settings, database: Database, broker: StubBroker
) -> None:
    networks = (ip_network("127.0.0.0/8"),)
    async with open_stack(settings, database, broker, agent_networks=networks) as stack:
        admin = await stack.as_role(Role.ADMIN)
        await create_stream(admin, v1_body())
        facestream = await stack.client()
        claimed = await facestream.post(
            "/1/streams/processing/queue", json={"filters": {}, "limit": 1}
        )
        assert claimed.status == 200
        assert len((await claimed.json())["streams"]) == 1
        await _error(await facestream.get("/1/streams"), 403, 12041)
        # a wrong token is still wrong inside the network
        await _error(
            await facestream.get("/1/streams", headers={"Authorization": "Bearer x"}), 401, 12040
        )


async def test_repeated_failures_from_one_address_get_429(stack: Stack) -> None:
    guesser = await stack.client("lst_" + "A" * 43)
    for _ in range(5):
        await _error(await guesser.get("/1/streams"), 401, 12040)
    blocked = await guesser.get("/1/streams")
    await _error(blocked, 429, 12042)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    # the address waits, whatever it sends now; public routes still answer
    viewer = await stack.as_role(Role.VIEWER)
    await _error(await viewer.get("/1/streams"), 429, 12042)
    assert (await viewer.get("/version")).status == 200


async def test_tokens_api_makes_lists_and_revokes(stack: Stack) -> None:
    admin = await stack.as_role(Role.ADMIN)
    made = await admin.post(
        "/1/tokens", json={"role": "operator", "account_id": ACCOUNT, "name": "ci"}
    )
    created = await made.json()
    assert made.status == 201, created
    token = created["token"]
    assert token.startswith("lst_") and len(token) >= 40
    operator = await stack.client(token)
    await create_stream(operator, v1_body())

    listed = await (await admin.get("/1/tokens")).json()
    shown = {t["token_id"]: t for t in listed["tokens"]}
    assert shown[created["token_id"]] == {
        "token_id": created["token_id"],
        "role": "operator",
        "account_id": ACCOUNT,
        "name": "ci",
        "create_time": created["create_time"],
    }
    assert token not in str(listed)
    assert (await admin.delete(f"/1/tokens/{created['token_id']}")).status == 204
    await _error(await operator.get("/1/streams"), 401, 12040)
    await _error(await admin.delete(f"/1/tokens/{created['token_id']}"), 404, 12043)


async def test_no_token_in_clear_in_the_database_or_the_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await stack.as_role(Role.ADMIN)
    made = await (await admin.post("/1/tokens", json={"role": "viewer"})).json()
    token = made["token"]
    viewer = await stack.client(token)
    assert (await viewer.get("/1/streams")).status == 200
    session = await (await stack.client()).post("/console/session", json={"token": token})
    assert session.status == 200
    await (await stack.client("lst_wrong")).get("/1/streams")

    stored = await snapshot(stack.database)
    stored["api_tokens"] = await stack.database.api_tokens.find().to_list()
    stored["audit"] = await stack.database.audit.find().to_list()
    dumped = repr(stored)
    assert token not in dumped
    assert token_hash(token) in dumped  # what is stored instead
    assert token not in caplog.text
    assert "lst_wrong" not in caplog.text


async def test_console_session_needs_the_csrf_header_to_change_anything(stack: Stack) -> None:
    token = await stack.token(Role.OPERATOR)
    browser = await stack.client()
    await _error(await browser.post("/console/session", json={"token": "lst_nope"}), 401, 12040)
    signed = await browser.post("/console/session", json={"token": token})
    assert signed.status == 200
    assert (await signed.json())["role"] == "operator"
    cookie = signed.cookies[TOKEN_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    csrf = signed.cookies[CSRF_COOKIE].value

    assert (await browser.get("/1/streams")).status == 200  # the cookie signs reads in
    forged = await browser.post("/1/streams", json=v1_body())  # what another site could send
    await _error(forged, 403, 12041)
    await _error(
        await browser.post("/1/streams", json=v1_body(), headers={CSRF_HEADER: "guess"}), 403, 12041
    )
    assert await stack.database.streams.count_documents({}) == 0
    made = await browser.post("/1/streams", json=v1_body(), headers={CSRF_HEADER: csrf})
    assert made.status == 201

    assert (await browser.delete("/console/session")).status == 204
    await _error(await browser.get("/1/streams"), 401, 12040)


async def test_changes_are_audited_with_who_and_what(stack: Stack) -> None:
    operator = await stack.client(
        await stack.token(Role.OPERATOR, name="ops"), **{"X-Forwarded-For": "203.0.113.9"}
    )
    admin = await stack.as_role(Role.ADMIN)
    stream_id = await create_stream(operator, v1_body())
    patched = await operator.patch(f"/1/streams/{stream_id}", json={"status": "pause"})
    assert patched.status in (204, 200), await patched.text()
    await operator.get("/1/streams")  # reads are not audited
    await operator.post("/1/streams", json={"bad": 1})  # refused changes are not either

    entries = (await (await admin.get("/1/audit")).json())["entries"]
    assert [(e["method"], e["route"]) for e in entries] == [
        ("PATCH", "/1/streams/{stream_id}"),
        ("POST", "/1/streams"),
    ]
    assert entries[0]["target"] == {"stream_id": stream_id}
    assert entries[0]["account_id"] is None  # the PATCH named no account
    created = entries[1]
    assert created["target"] == {"stream_id": stream_id}
    assert created["role"] == "operator" and created["token_name"] == "ops"
    assert created["account_id"] == ACCOUNT and created["status"] == 201
    assert created["address"] == "127.0.0.1"  # no trusted proxy: the header is not believed
    assert created["request_id"]
    by_account = await (await admin.get("/1/audit", params={"account_id": ACCOUNT})).json()
    assert [e["audit_id"] for e in by_account["entries"]] == [created["audit_id"]]
    # not for anyone else
    viewer = await stack.as_role(Role.VIEWER)
    await _error(await viewer.get("/1/audit"), 403, 12041)


async def test_concurrent_changes_each_have_their_row_when_answered(stack: Stack) -> None:
    """Rows of requests answered together are written together, each before its answer."""
    operator = await stack.client(await stack.token(Role.OPERATOR, name="ops"))
    created = await asyncio.gather(*(create_stream(operator, v1_body()) for _ in range(20)))
    rows = await stack.database.audit.find({"method": "POST"}).to_list()
    assert sorted(row["target"]["stream_id"] for row in rows) == sorted(created)


async def test_with_auth_off_everything_acts_as_admin(client: Client) -> None:
    me = await (await client.get("/1/auth/me")).json()
    assert me["auth"] == "off" and me["role"] == "admin" and me["account_id"] is None
    assert (await client.get("/1/streams")).status == 200
