"""Run luna-streams components as real processes for tests (multi-replica, kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shared.core.settings import Settings, env_name
from tests.services import free_port
from tests.waits import accepts_connections, wait_until

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
        port = self.port

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.stderr_text()
                raise RuntimeError(f"{self.module} exited: {err[-2000:]}")
            return accepts_connections(port)

        wait_until(listening, timeout, interval=0.1, what=f"{self.module} listening on {port}")

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
