"""Session-wide real services; a fresh database and queue prefix for every test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.store.mongo import Database, open_database
from tests.isolation import drop_everything, isolated_settings
from tests.services import mongo_server, rabbitmq_server

#: seconds before pytest-timeout stops a test that the stacks of its tasks are printed
TASK_DUMP_LEAD = 10


@pytest.fixture(autouse=True)
async def _print_tasks_before_a_timeout(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """pytest-timeout prints the threads' stacks, which for a test waiting on the event
    loop show only ``select``: shortly before the timeout, print every task's stack (to
    stderr, in the test's report), which names the ``await`` that never ends."""
    marker = request.node.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else request.config.getini("timeout")
    loop = asyncio.get_running_loop()
    handle = loop.call_later(
        max(float(timeout) - TASK_DUMP_LEAD, 1.0), _print_tasks, request.node.nodeid
    )
    yield
    handle.cancel()


def _print_tasks(nodeid: str) -> None:
    print(f"\n+++ {nodeid}: about to time out; the event loop's tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    with mongo_server() as uri:
        yield uri


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with rabbitmq_server() as url:
        yield url


@pytest.fixture
async def settings(mongo_uri: str, amqp_url: str) -> AsyncIterator[Settings]:
    """Settings isolated to this test: its own database and its own queue names."""
    settings = isolated_settings(mongo_uri, amqp_url, feedback_timeout=5.0)
    yield settings
    await drop_everything(settings)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    assert settings.mongo_uri is not None
    db = await open_database(settings.mongo_uri, settings.db_name)
    yield db
    await db.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def queue_worker(settings: Settings) -> AsyncIterator[FeedbackWorker]:
    """A feedback consumer on this test's queues, in this process."""
    worker = FeedbackWorker(settings)
    await worker.start()
    yield worker
    await worker.stop(timeout=5)


#: the longest a ``slow``-marked test (a fault scenario, a fuzzing run) may take
SLOW_TEST_TIMEOUT = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``slow`` tests get :data:`SLOW_TEST_TIMEOUT` instead of the default (pyproject's
    ``timeout``) unless they name their own with ``@pytest.mark.timeout``."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT))


def _live_children(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the processes whose parent is ``pid`` and that still run
    (zombies are dead: only not yet reaped)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            children.append((int(entry.name), cmdline))
    return children


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves no process behind: a child of this session still alive at its end
    fails the run (and is stopped, being ours)."""
    if not Path("/proc").is_dir():
        return
    left = _live_children(os.getpid())
    if not left:
        return
    for pid, cmdline in left:
        print(f"\nchild process left running by the tests: {pid} {cmdline}", file=sys.stderr)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
