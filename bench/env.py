"""Services for benchmarks: ``LUNA_STREAMS_MONGO_URI`` or an in-process SecantusDB;
``LUNA_STREAMS_AMQP_URL`` or the local RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.settings import Settings


@contextlib.contextmanager
def mongo_uri() -> Iterator[str]:
    uri = os.environ.get("LUNA_STREAMS_MONGO_URI")
    if uri:
        yield uri
        return
    from secantus import SecantusDBServer

    data_dir = tempfile.mkdtemp(prefix="luna-streams-bench-")
    server: Any = SecantusDBServer(host="127.0.0.1", port=0, storage_path=data_dir)
    server.start()
    try:
        host, port = server.address
        yield f"mongodb://{host}:{port}/?directConnection=true"
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_settings(uri: str, **extra: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        mongo_uri=uri,
        amqp_url=os.environ.get("LUNA_STREAMS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        db_name=f"bench_{tag}",
        queue_prefix=f"bench_{tag}",
        **extra,
    )


@contextlib.asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` runs of the coroutine function ``fn``."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2]
