"""Where the tests find real services.

MongoDB: ``LUNA_STREAMS_MONGO_URI``, else a testcontainers MongoDB where a Docker engine
answers, else the embedded SecantusDB server (MongoDB wire protocol) as its own process for the
whole session.
RabbitMQ: ``LUNA_STREAMS_AMQP_URL``, else testcontainers where Docker answers, else the
local server at 127.0.0.1:5672. A missing service skips locally and fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from shared.store.embedded_mongo import embedded_uri

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker  # testcontainers' dependency

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def mongo_server() -> Iterator[str]:
    uri = os.environ.get("LUNA_STREAMS_MONGO_URI")
    if uri:
        yield uri
        return
    if docker_available():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as container:
            yield container.get_connection_url()
        return
    with embedded_mongo() as uri:
        yield uri


class EmbeddedServer:
    """The embedded server (SecantusDB) as its own process, as users run it
    (``luna-streams embedded-mongo``): in the test process it would share the GIL with
    the code under test. Its output goes to a file beside its data."""

    def __init__(self, data_dir: str, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = f"{data_dir.rstrip('/')}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return embedded_uri(self.port)

    def start(self) -> EmbeddedServer:
        env = {
            **os.environ,
            "LUNA_STREAMS_EMBEDDED_DATA_DIR": self.data_dir,
            "LUNA_STREAMS_EMBEDDED_PORT": str(self.port),
        }
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "embedded-mongo"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not port_open(self.uri, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded server did not start (see {self.log_path})")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """kill -9: nothing flushed, nothing checkpointed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a clean checkpoint), killed if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def embedded_mongo() -> Iterator[str]:
    if importlib.util.find_spec("secantus") is None:
        missing("no LUNA_STREAMS_MONGO_URI, no Docker and no SecantusDB installed")
    data_dir = tempfile.mkdtemp(prefix="luna-streams-test-mongo-")
    server = EmbeddedServer(data_dir, free_port())
    try:
        yield server.start().uri
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(server.log_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[str]:
    url = os.environ.get("LUNA_STREAMS_AMQP_URL")
    if url:
        yield url
        return
    if docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    if not port_open(LOCAL_AMQP, 5672):
        missing("no LUNA_STREAMS_AMQP_URL, no Docker and no RabbitMQ at 127.0.0.1:5672")
    yield LOCAL_AMQP
