"""The one lifecycle of the four processes (:mod:`shared.runtime.lifecycle`), and the
gateway's part.

The sequence is checked in this process with a recording component and a real SIGTERM; the
gateway's healthcheck answers 503 once readiness is off; the gateway component drains a
request in flight. The processes themselves are stopped by SIGTERM in test_cli and
test_worker_health.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.__main__ import Gateway
from gateway.keys import READINESS
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.runtime.lifecycle import Readiness, serve
from tests.integration.factories import queue_depth
from tests.processes import free_port
from tests.waits import wait_for

Client = TestClient[Any, Any]


class Recorder:
    name = "recorder"

    def __init__(self, *, breaks: bool = False, fails_to_start: bool = False) -> None:
        self.readiness = Readiness()
        self.calls: list[str] = []
        self.ready_when_stopping: bool | None = None
        self.breaks = breaks
        self.fails_to_start = fails_to_start

    async def start(self) -> None:
        self.calls.append("start")
        if self.fails_to_start:
            raise ConnectionError("no broker")

    async def broken(self) -> str:
        if self.breaks:
            # on purpose: the component works a moment before it breaks, not at once
            await asyncio.sleep(0.2)
            return "the consumer is gone"
        await asyncio.Event().wait()
        return "never"

    async def stop_taking_work(self) -> None:
        self.ready_when_stopping = self.readiness.ready
        self.calls.append("stop_taking_work")

    async def finish(self, timeout: float) -> Mapping[str, int]:  # noqa: ASYNC109 - a bound
        self.calls.append(f"finish({timeout:g})")
        return {"done": 7}

    async def close(self) -> None:
        self.calls.append("close")


async def test_sigterm_turns_readiness_off_then_drains_and_logs_the_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    component = Recorder()
    caplog.set_level(logging.INFO, logger="luna_streams.lifecycle")
    served = asyncio.create_task(serve(component, shutdown_timeout=3))
    await wait_for(lambda: component.readiness.ready, timeout=5, interval=0.01, what="ready")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(served, 10) == 0
    assert component.calls == ["start", "stop_taking_work", "finish(3)", "close"]
    assert component.ready_when_stopping is False  # off before it stopped taking work
    assert not component.readiness.ready
    text = caplog.text
    assert "SIGTERM received: not ready, stopping" in text
    assert "recorder stopped: done 7" in text
    # the handlers are the process's again
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


async def test_a_broken_component_stops_the_same_way_with_exit_code_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    component = Recorder(breaks=True)
    caplog.set_level(logging.INFO, logger="luna_streams.lifecycle")
    assert await asyncio.wait_for(serve(component, shutdown_timeout=1), 10) == 1
    assert component.calls == ["start", "stop_taking_work", "finish(1)", "close"]
    assert "recorder cannot work: the consumer is gone" in caplog.text


async def test_a_failed_start_closes_what_it_opened() -> None:
    component = Recorder(fails_to_start=True)
    with pytest.raises(ConnectionError):
        await serve(component, shutdown_timeout=1)
    assert component.calls == ["start", "close"]
    assert not component.readiness.ready


async def test_healthcheck_answers_503_once_readiness_is_off(client: Client) -> None:
    assert (await client.get("/healthcheck")).status == 200
    client.app[READINESS].ready = False
    resp = await client.get("/healthcheck")
    assert resp.status == 503
    answer = await resp.json()
    assert answer["detail"] == "The gateway is stopping"


async def test_the_gateway_finishes_a_request_in_flight(settings: Settings) -> None:
    """SIGTERM during a slow request (a feedback batch no worker answers within its
    timeout): the gateway stops listening at once, answers that request, then stops."""
    port = free_port()
    gateway = Gateway(
        settings.model_copy(update={"host": "127.0.0.1", "port": port, "feedback_timeout": 2.0})
    )
    served = asyncio.create_task(serve(gateway, shutdown_timeout=10))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            try:
                async with session.get(f"{base}/healthcheck") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_for(up, timeout=10, interval=0.1)
        item = {"stream_id": "b5e8a0b4-6a34-4a8f-8d3c-4ad4ee2bd0a7", "status": "in_progress"}
        slow = asyncio.create_task(
            session.post(
                f"{base}/1/streams/processing/feedback",
                json={"streams": [{**item, "version": 1}]},
            )
        )
        feedback_queue = QueueNames(settings.queue_prefix).feedback

        async def in_hand() -> bool:  # no worker answers: the batch waits in the queue
            return await queue_depth(settings, feedback_queue) == 1

        await wait_for(in_hand, timeout=5, interval=0.05, what="the batch published")
        os.kill(os.getpid(), signal.SIGTERM)
        await wait_for(lambda: not gateway.readiness.ready, timeout=5, interval=0.01)
        with pytest.raises(aiohttp.ClientConnectionError):  # no longer listening
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(f"{base}/healthcheck")
        resp = await slow
        assert resp.status in (200, 503, 504), await resp.text()  # answered, not cut
    assert await asyncio.wait_for(served, 20) == 0
