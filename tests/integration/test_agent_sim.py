"""``luna-streams agent-sim`` as a user runs it: progress while it runs, an honest exit code."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from queue_worker.worker import FeedbackWorker
from tests.integration.factories import v1_body
from tests.processes import ROOT, free_port

Client = TestClient[Any, Any]


async def agent_sim(*args: str) -> tuple[int, str, str]:
    """Run the simulator in a child process without blocking the test's server."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "agent-sim",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_progress_lines_and_totals(client: Client, queue_worker: FeedbackWorker) -> None:
    for i in range(3):
        assert (await client.post("/1/streams", json=v1_body(name=f"sim-{i}"))).status == 201
    url = str(client.make_url("/"))
    code, out, err = await agent_sim(
        "--url", url, "--duration", "3.5", "--progress-period", "1",
        "--feedback-period", "1", "--request-period", "0.3", "--json",
    )  # fmt: skip
    assert code == 0, err
    progress = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(progress) >= 2
    assert progress[-1]["claimed"] == 3
    assert progress[-1]["errors"] == {}
    assert "claim" in progress[-1]["latency_ms"]
    totals = json.loads(out)
    assert totals["claimed"] == 3
    assert totals["feedback_items"] >= 3
    assert totals["modified"] >= 3


async def test_text_progress_and_quiet(client: Client, queue_worker: FeedbackWorker) -> None:
    url = str(client.make_url("/"))
    code, out, err = await agent_sim(
        "--url", url, "--duration", "2.2", "--progress-period", "1",
    )  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("agent-sim: ")]
    assert len(lines) >= 2
    assert "claimed 0, feedback items 0" in lines[0]
    assert "errors 0" in lines[0]
    assert "claim p50 " in lines[0]
    assert out.startswith("agent-sim: done after ")
    code, out, err = await agent_sim(
        "--url", url, "--duration", "1.5", "--progress-period", "0.5", "--quiet"
    )
    assert code == 0
    assert err == ""
    assert out.startswith("agent-sim: done after ")


async def test_no_server_fails_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out, err = await agent_sim("--url", url, "--duration", "60")
    assert code == 1
    assert time.monotonic() - started < 20
    assert f"no LUNA Streams API at {url}" in err
    code, out, _ = await agent_sim("--url", url, "--json")
    assert code == 1
    assert "no LUNA Streams API" in json.loads(out)["error"]


async def test_failed_requests_give_exit_code_1() -> None:
    """An API that answers /version but fails every claim: the run ends with code 1."""

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"Version": {"api": 1, "major": 0, "minor": 1, "patch": 0}})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error_code": 1, "desc": "", "detail": ""}, status=500)

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_post("/1/streams/processing/queue", broken)
    async with TestServer(app) as server:
        code, out, _ = await agent_sim(
            "--url", str(server.make_url("/")), "--duration", "1.5", "--request-period", "0.2",
            "--json", "--quiet",
        )  # fmt: skip
    assert code == 1
    totals = json.loads(out)
    assert totals["errors"]["claim:500:1"] >= 2
