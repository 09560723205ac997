"""Run luna-streams components as real processes for tests (multi-replica, kill -9)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shared.core.settings import Settings, env_name
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


def component_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a component process the same settings as ``settings``."""
    env = dict(os.environ)
    for name in type(settings).model_fields:
        variable = env_name(type(settings), name)
        value = getattr(settings, name)
        if value is None:
            env.pop(variable, None)
            continue
        if hasattr(value, "model_dump_json"):
            env[variable] = value.model_dump_json()
        elif isinstance(value, tuple | list):  # networks: a JSON list of CIDRs
            env[variable] = json.dumps([str(item) for item in value])
        else:
            env[variable] = str(value)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Component:
    def __init__(self, module: str, env: dict[str, str], port: int | None = None) -> None:
        self.module = module
        self.env = env
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        # stderr goes to a file: a pipe nobody reads blocks the child after 64 KiB
        self.stderr: IO[bytes] | None = None

    def start(self) -> Component:
        if self.stderr is not None:
            self.stderr.close()
        # open for the life of the process, closed on the next start
        self.stderr = tempfile.TemporaryFile(prefix=f"{self.module}-stderr-")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        return self

    def stderr_text(self) -> str:
        """What the process wrote to stderr so far."""
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 30.0) -> None:
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.stderr_text()
                raise RuntimeError(f"{self.module} exited: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.module} did not listen on {self.port}")

    def kill(self) -> None:
        """kill -9: no cleanup, no acknowledgements, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running(*components: Component) -> Iterator[list[Component]]:
    started = [c.start() for c in components]
    try:
        for c in started:
            if c.port is not None:
                c.wait_listening()
        yield started
    finally:
        for c in started:
            c.terminate()


def gateway(settings: Settings) -> Component:
    port = free_port()
    return Component(
        "gateway",
        component_env(settings, LUNA_STREAMS_PORT=str(port), LUNA_STREAMS_HOST="127.0.0.1"),
        port,
    )


def worker(module: str, settings: Settings, **extra: str) -> Component:
    return Component(module, component_env(settings, **extra))


async def wait_for(
    predicate: object,
    timeout: float = 20.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
    interval: float = 0.2,
) -> None:
    """Poll an async predicate until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(interval)
    raise TimeoutError("condition not met in time")
