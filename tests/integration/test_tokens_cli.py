"""The ``luna-streams tokens`` command (create, list, revoke) against a gateway with
authentication on, in another process than the gateway; the HTTP side of authentication is
tested in tests/fast/test_auth.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest

from shared.core.settings import Settings
from shared.services.access.credentials import CACHE_SECONDS
from shared.store.mongo import Database
from tests.fast.test_auth import Stack, _error, open_stack
from tests.integration.factories import ACCOUNT, create_stream, v1_body


@pytest.fixture
async def stack(settings: Settings, database: Database) -> AsyncIterator[Stack]:
    async with open_stack(settings, database, auth_max_failures=5) as made:
        yield made


def _tokens_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LUNA_STREAMS_MONGO_URI": settings.mongo_uri or "",
        "LUNA_STREAMS_DB_NAME": settings.db_name,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "tokens", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_tokens_command_makes_lists_and_revokes(stack: Stack, settings: Settings) -> None:
    made = await asyncio.to_thread(
        _tokens_cli, settings, "create", "--role", "operator", "--account", ACCOUNT, "--name", "cli"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("lst_")
    operator = await stack.client(token)
    body = v1_body()
    del body["account_id"]
    await create_stream(operator, body)

    listed = await asyncio.to_thread(_tokens_cli, settings, "list")
    assert listed.returncode == 0 and "operator" in listed.stdout and ACCOUNT in listed.stdout
    assert token not in listed.stdout
    token_id = listed.stdout.split()[0]
    revoked = await asyncio.to_thread(_tokens_cli, settings, "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    # revoked in another process: this gateway trusts what it checked for CACHE_SECONDS
    deadline = time.monotonic() + CACHE_SECONDS + 2
    while (await operator.get("/1/streams")).status == 200:
        assert time.monotonic() < deadline, "a revoked token still works"
        await asyncio.sleep(0.2)
    await _error(await operator.get("/1/streams"), 401, 12040)

    refused = await asyncio.to_thread(
        _tokens_cli, settings, "create", "--role", "agent", "--account", ACCOUNT
    )
    assert refused.returncode == 2 and "only viewer and operator" in refused.stderr
    bad = await asyncio.to_thread(
        _tokens_cli, settings, "create", "--role", "viewer", "--account", "x"
    )
    assert bad.returncode == 2 and "uuid" in bad.stderr
