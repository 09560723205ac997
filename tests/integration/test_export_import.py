"""Export (JSON lines, streamed) and import (validated whole first, all or nothing,
idempotent), v1 and v2, into another account and into another deployment."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.core.settings import Settings
from shared.store.mongo import Database
from tests.integration.factories import (
    ACCOUNT,
    OTHER_ACCOUNT,
    create_group,
    expect_error,
    snapshot,
    v1_body,
    v2_body,
)
from tests.isolation import drop_everything
from tests.processes import ROOT, gateway, running

Client = TestClient[Any, Any]
NDJSON = {"Content-Type": "application/x-ndjson"}
#: what an import does not carry over
NOT_SETTINGS = {"stream_id", "account_id", "status", "version", "create_time"}


@pytest.fixture
async def elsewhere(settings: Settings) -> AsyncIterator[Client]:
    """A gateway of another deployment: its own database and queues."""
    other = settings.model_copy(
        update={"db_name": settings.db_name + "_b", "queue_prefix": settings.queue_prefix + "_b"}
    )
    async with TestClient(TestServer(create_app(other))) as client:
        yield client
    await drop_everything(other)


def varied(n: int, account_id: str = ACCOUNT) -> dict[str, Any]:
    """Streams that differ from each other in their settings."""
    body = v1_body(
        account_id=account_id,
        name=f"cam-{n}",
        description=f"floor {n % 7}",
        reference=f"rtsp://camera/{n}",
        location={"city": f"city-{n % 5}"},
        autorestart={"restart": n % 2, "attempt_count": 1 + n % 9, "delay": 1 + n % 30},
    )
    body["policies"] = {"filtering": {"min_score": round(0.1 + (n % 8) / 10, 2)}}
    if n % 3 == 0:
        body["group_name"] = f"site-{n % 4}"
    return body


async def post_all(client: Client, bodies: list[dict[str, Any]], version: int = 1) -> list[str]:
    async def one(body: dict[str, Any]) -> str:
        resp = await client.post(f"/{version}/streams", json=body)
        answer = await resp.json()
        assert resp.status == 201, answer
        return str(answer["stream_id"])

    ids: list[str] = []
    for start in range(0, len(bodies), 100):
        ids += await asyncio.gather(*(one(body) for body in bodies[start : start + 100]))
    return ids


async def export(client: Client, account_id: str, version: int = 1) -> bytes:
    resp = await client.get(f"/{version}/streams/export", params={"account_id": account_id})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return await resp.read()


async def import_(
    client: Client, lines: bytes, account_id: str, version: int = 1, **params: str
) -> Any:
    resp = await client.post(
        f"/{version}/streams/import",
        params={"account_id": account_id, **params},
        data=lines,
        headers=NDJSON,
    )
    return resp, await resp.json()


async def settings_by_name(client: Client, account_id: str, version: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = {}
    page = 1
    while True:
        resp = await client.get(
            f"/{version}/streams",
            params={"account_id": account_id, "page": page, "page_size": 1000},
        )
        streams = (await resp.json())["streams"]
        for stream in streams:
            view = {k: v for k, v in stream.items() if k not in NOT_SETTINGS}
            view["autorestart"] = {
                k: stream["autorestart"][k] for k in ("restart", "attempt_count", "delay")
            }
            found[stream["name"]] = view
        if len(streams) < 1000:
            return found
        page += 1


@pytest.mark.slow
async def test_a_thousand_streams_exported_and_imported_keep_their_settings(
    client: Client, database: Database, elsewhere: Client
) -> None:
    for n in range(4):
        await create_group(client, f"site-{n}")
    await post_all(client, [varied(n) for n in range(1000)])
    exported = await export(client, ACCOUNT)
    lines = exported.splitlines()
    assert len(lines) == 1000
    first = next(x for x in map(json.loads, lines) if x["name"] == "cam-0")
    assert "status" not in first and "version" not in first and "create_time" not in first
    assert first["groups"] == ["site-0"]
    source = await settings_by_name(client, ACCOUNT)
    assert len(source) == 1000

    # into another account of the same deployment, paused
    resp, answer = await import_(client, exported, OTHER_ACCOUNT)
    assert resp.status == 200, answer
    assert answer == {"created": 1000, "existing": 0}
    assert await settings_by_name(client, OTHER_ACCOUNT) == source
    assert (
        await database.streams.count_documents({"account_id": OTHER_ACCOUNT, "status": "pause"})
        == 1000
    )
    # each one a create: one log row
    assert await database.stream_logs.count_documents({"account_id": OTHER_ACCOUNT}) == 1000
    # again: nothing new
    resp, answer = await import_(client, exported, OTHER_ACCOUNT)
    assert answer == {"created": 0, "existing": 1000}
    assert await database.streams.count_documents({"account_id": OTHER_ACCOUNT}) == 1000

    # into another deployment (its groups made there), pending
    resp, answer = await import_(elsewhere, exported, ACCOUNT, status="pending")
    assert resp.status == 200, answer
    assert answer == {"created": 1000, "existing": 0}
    assert await settings_by_name(elsewhere, ACCOUNT) == source
    resp = await elsewhere.get("/1/groups", params={"account_id": ACCOUNT})
    assert sorted(g["group_name"] for g in await resp.json()) == [f"site-{n}" for n in range(4)]
    resp = await elsewhere.get("/1/streams/count", params={"statuses": "pending"})
    assert (await resp.json())["streams_count"] == 1000


async def test_one_bad_line_writes_nothing_and_is_named(client: Client, database: Database) -> None:
    await create_group(client, "site-0")
    await create_group(client, "site-3")
    await post_all(client, [varied(n) for n in range(5)])
    lines = (await export(client, ACCOUNT)).splitlines()
    bad_settings = json.loads(lines[1])
    bad_settings["data"]["type"] = "carrier-pigeon"
    no_key = json.loads(lines[2])
    del no_key["stream_id"]
    body = b"\n".join(
        [
            lines[0],
            json.dumps(bad_settings).encode(),
            json.dumps(no_key).encode(),
            b"",
            b"{not json",
            lines[3],
            lines[3],
            lines[4],
        ]
    )
    before = await snapshot(database)
    resp, answer = await import_(client, body, OTHER_ACCOUNT)
    await expect_error(resp, 400, 12046)
    assert [(x["line"], x["error_code"]) for x in answer["lines"]] == [
        (2, 12022),
        (3, 12027),
        (5, 12027),
        (7, 12027),
    ]
    assert "data.type" in answer["lines"][0]["error"]
    assert "import_key" in answer["lines"][1]["error"]
    assert "line 6" in answer["lines"][3]["error"]  # the same key twice
    assert await snapshot(database) == before
    # a dry run of good lines writes nothing either
    resp, answer = await import_(client, b"\n".join(lines), OTHER_ACCOUNT, dry_run="true")
    assert (resp.status, answer) == (200, {"created": 0, "existing": 0})
    assert await snapshot(database) == before
    # the wrong content type, a bad status, another's account
    resp = await client.post(
        "/1/streams/import", params={"account_id": OTHER_ACCOUNT}, data=lines[0]
    )
    await expect_error(resp, 415, 12023)
    resp, _ = await import_(client, lines[0], OTHER_ACCOUNT, status="in_progress")
    await expect_error(resp, 400, 12012)
    assert await snapshot(database) == before


async def test_v2_round_trip_with_a_chosen_key(client: Client, database: Database) -> None:
    await post_all(client, [v2_body(name="v2-cam", description="two")], version=2)
    [line] = (await export(client, ACCOUNT, version=2)).splitlines()
    stream = json.loads(line)
    assert set(stream) == {
        "stream_id",
        "account_id",
        "name",
        "description",
        "data",
        "location",
        "autorestart",
        "groups",
    }
    stream["import_key"] = "my-key"
    resp, answer = await import_(client, json.dumps(stream).encode(), OTHER_ACCOUNT, version=2)
    assert (resp.status, answer) == (200, {"created": 1, "existing": 0})
    assert await settings_by_name(client, OTHER_ACCOUNT, 2) == await settings_by_name(
        client, ACCOUNT, 2
    )
    # the key, not the stream id, makes it the same line
    stream["stream_id"] = "another"
    resp, answer = await import_(client, json.dumps(stream).encode(), OTHER_ACCOUNT, version=2)
    assert answer == {"created": 0, "existing": 1}


async def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out, err


@pytest.mark.slow
async def test_the_command_line_exports_and_imports_through_the_api(
    settings: Settings, client: Client, database: Database, tmp_path: Path
) -> None:
    for n in range(4):
        await create_group(client, f"site-{n}")
    await post_all(client, [varied(n) for n in range(30)])
    with running(gateway(settings)) as (api,):
        saved = tmp_path / "fleet.jsonl"
        code, _, err = await run_cli(
            "export", "--url", api.url, "--account-id", ACCOUNT, "-o", str(saved)
        )
        assert code == 0, err
        assert len(saved.read_bytes().splitlines()) == 30
        # a bad line: the import writes nothing and names it by its number in the file
        lines = saved.read_bytes().splitlines()
        broken = tmp_path / "broken.jsonl"
        broken.write_bytes(b"\n".join([*lines[:20], b'{"stream_id": "x"}', *lines[20:]]))
        before = await snapshot(database)
        code, _, err = await run_cli(
            "import", "--url", api.url, "--account-id", OTHER_ACCOUNT, str(broken)
        )
        assert code != 0
        assert b"line 21: " in err, err
        assert await snapshot(database) == before
        code, out, err = await run_cli(
            "import", "--url", api.url, "--account-id", OTHER_ACCOUNT, "-", stdin=saved.read_bytes()
        )
        assert code == 0, err
        assert json.loads(out) == {"created": 30, "existing": 0}
    assert await settings_by_name(client, OTHER_ACCOUNT) == await settings_by_name(client, ACCOUNT)
