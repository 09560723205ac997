"""Where the tests find real services.

MongoDB: ``LUNA_STREAMS_MONGO_URI``, else a testcontainers MongoDB where a Docker engine
answers, else an in-process SecantusDB server (MongoDB wire protocol) for the whole session.
RabbitMQ: ``LUNA_STREAMS_AMQP_URL``, else testcontainers where Docker answers, else the
local server at 127.0.0.1:5672. A missing service skips locally and fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

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
    try:
        from secantus import SecantusDBServer
    except ImportError:
        missing("no LUNA_STREAMS_MONGO_URI, no Docker and no SecantusDB installed")
        return
    data_dir = tempfile.mkdtemp(prefix="luna-streams-test-mongo-")
    server: Any = SecantusDBServer(host="127.0.0.1", port=0, storage_path=data_dir)
    server.start()
    try:
        host, port = server.address
        yield f"mongodb://{host}:{port}/?directConnection=true"
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


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
