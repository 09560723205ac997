"""Waiting on a condition instead of sleeping: poll it until it holds or a deadline passes.

``wait_for`` (in a test's event loop) and ``wait_until`` (in plain code, for child processes
and blocking clients) check the condition first, then every ``interval`` seconds, and raise
``TimeoutError`` naming what did not happen once ``timeout`` seconds have passed.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable

DEFAULT_TIMEOUT = 20.0
DEFAULT_INTERVAL = 0.2


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool],
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
    interval: float = DEFAULT_INTERVAL,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (a plain or an async function) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true, blocking (no event loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
