"""Every operation of the served OpenAPI spec, called with every kind of credential
(authentication on): 401 without one, 403 where the role or the account scope does not reach,
and otherwise an answer that is neither (2xx for every operation given a valid request).

The expected outcome is derived from the spec's ``x-access``, ``x-roles`` and
``x-account-scope``; the spec is derived from the same operation table as the router, so a
route added without thinking about its access is walked too."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.routes.bulk import NDJSON
from gateway.routes.console import STATIC_DIR
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.domain.roles import Role
from shared.store.mongo import Database
from tests.fast.test_auth import Stack, open_stack
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Client,
    create_group,
    create_stream,
    v1_body,
    v2_body,
)

pytestmark = pytest.mark.usefixtures("queue_worker")

#: who calls: (label, role or None for no credential, account of the token)
CALLERS: list[tuple[str, Role | None, str | None]] = [
    ("anonymous", None, None),
    ("viewer", Role.VIEWER, None),
    ("operator", Role.OPERATOR, None),
    ("agent", Role.AGENT, None),
    ("admin", Role.ADMIN, None),
    ("viewer of the account", Role.VIEWER, ACCOUNT),
    ("operator of the account", Role.OPERATOR, ACCOUNT),
    ("operator of another account", Role.OPERATOR, OTHER_ACCOUNT),
]

#: a webhook the walk registers (a public address: nothing delivers it here)
WEBHOOK = {"account_id": ACCOUNT, "url": "https://93.184.215.14/hook", "events": ["failure"]}

#: operations that need more than ids to succeed, and why they answer something else
NOT_2XX = {
    # a preview needs an agent that reported one: 404 (39009) is the right answer here
    "preview": (404,),
}


@pytest.fixture
async def stack(
    settings: Settings, database: Database, queue_worker: FeedbackWorker
) -> AsyncIterator[Stack]:
    async with open_stack(settings, database, auth_max_failures=10_000) as made:
        yield made


class Fixtures:
    """Fresh objects for each call, so that a delete or a claim leaves the next call its own."""

    def __init__(self, stack: Stack, admin: Client) -> None:
        self.stack = stack
        self.admin = admin
        self.count = 0

    async def ids(self) -> dict[str, str]:
        self.count += 1
        stream_id = await create_stream(self.admin, v1_body())
        group_id = await create_group(self.admin, f"walk-{self.count}")
        token_id = (await self.stack.store.create(Role.VIEWER))[0]["_id"]
        # a fresh webhook; the earlier ones go (an account has 50 at most)
        resp = await self.admin.get("/1/webhooks", params={"page_size": 100})
        for hook in (await resp.json())["webhooks"]:
            await self.admin.delete(f"/1/webhooks/{hook['webhook_id']}")
        resp = await self.admin.post("/1/webhooks", json=WEBHOOK)
        assert resp.status == 201, await resp.text()
        return {
            "stream_id": stream_id,
            "group_id": group_id,
            "token_id": token_id,
            "webhook_id": (await resp.json())["webhook_id"],
            "name": "app.js",
            "page": "index.html",
        }


def _body(method: str, path: str, ids: dict[str, str], token: str) -> dict[str, Any] | None:
    """A valid body for the operation, or None for one without a body."""
    version = 2 if path.startswith("/2/") else 1
    stream_body = v1_body() if version == 1 else v2_body()
    item = {"stream_id": ids["stream_id"], "version": 1, "status": "in_progress"}
    link = {"stream_ids": [ids["stream_id"]], "group_id": ids["group_id"]}
    bodies: dict[str, dict[str, Any]] = {
        "POST /{v}/streams": stream_body,
        "PUT /{v}/streams/{stream_id}": stream_body,
        "PATCH /{v}/streams/{stream_id}": {"status": "pause"},
        "DELETE /{v}/streams": {"stream_ids": [ids["stream_id"]]},
        "POST /{v}/groups": {"account_id": ACCOUNT, "group_name": f"g-{ids['stream_id']}"},
        "PATCH /{v}/groups/{group_id}": {"description": "walked"},
        "PATCH /{v}/linker": {**link, "action": "attach"},
        "POST /{v}/streams/processing/queue": {"filters": {}, "limit": 1},
        "POST /{v}/streams/processing/feedback": {"streams": [item]},
        "POST /{v}/tokens": {"role": "viewer"},
        "POST /{v}/webhooks": dict(WEBHOOK),
        "PATCH /{v}/streams": {"status": "pause"},
        "POST /console/session": {"token": token},
    }
    return bodies.get(f"{method} {re.sub(r'^/[12]/', '/{v}/', path)}")


def _query(operation: dict[str, Any]) -> dict[str, str]:
    """The required query parameters, with a value of their type."""
    query = {}
    for param in operation.get("parameters", []):
        if param["in"] == "query" and param.get("required"):
            query[param["name"]] = "1" if param["schema"].get("type") == "integer" else "x"
    return query


def _expected(operation: dict[str, Any], role: Role | None, account: str | None) -> str:
    access = operation["x-access"]
    if access == "public":
        return "allowed"
    if role is None:
        return "401"
    if operation["x-roles"] != ["*"] and role.value not in operation["x-roles"]:
        return "403"
    if (
        account is not None
        and access != "signed_in"
        and operation["x-account-scope"] != "account_id"
    ):
        return "403"
    return "allowed"


async def test_every_operation_with_every_role(stack: Stack) -> None:
    admin = await stack.as_role(Role.ADMIN)
    spec = await (await admin.get("/docs/spec", headers={"Accept": "application/json"})).json()
    fixtures = Fixtures(stack, admin)
    callers = []
    for label, role, account in CALLERS:
        token = await stack.token(role, account) if role is not None else None
        callers.append((label, role, account, await stack.client(token), token))
    sign_in_token = await stack.token(Role.VIEWER)
    assert (STATIC_DIR / "app.js").is_file()

    walked = 0
    problems = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for label, role, account, client, _ in callers:
                ids = await fixtures.ids()
                url = re.sub(r"{([^}]+)}", lambda m, ids=ids: ids[m[1]], path)
                body = _body(method.upper(), path, ids, sign_in_token)
                if body is not None and account is not None:
                    body.pop("account_id", None)  # an account token's own is taken
                params = _query(operation)
                sent: dict[str, Any] = {"json": body}
                if path.endswith("/streams/import"):  # JSON lines, as the export gives them
                    line = {**v1_body(), "stream_id": ids["stream_id"]}
                    if path.startswith("/2/"):
                        line = {**v2_body(), "stream_id": ids["stream_id"]}
                    sent = {"data": json.dumps(line), "headers": {"Content-Type": NDJSON}}
                resp = await client.request(
                    method.upper(),
                    url,
                    params=params,
                    **sent,
                    **({"headers": {"Accept": "text/html"}} if path == "/" else {}),
                )
                status = resp.status
                resp.close()  # the event stream never ends by itself
                walked += 1
                expected = _expected(operation, role, account)
                if expected in ("401", "403"):
                    if str(status) != expected:
                        problems.append(
                            f"{method.upper()} {path} as {label}: {status}, not {expected}"
                        )
                    continue
                if status in (401, 403) or status >= 500:
                    problems.append(f"{method.upper()} {path} as {label}: {status}")
                    continue
                other_account = account == OTHER_ACCOUNT
                fine = NOT_2XX["preview"] if "/preview/" in path else ()
                if not other_account and not 200 <= status < 400 and status not in fine:
                    problems.append(f"{method.upper()} {path} as {label}: {status}, not 2xx")
    assert not problems, "\n".join(problems)
    assert walked == len(CALLERS) * sum(len(m) for m in spec["paths"].values())
