"""Services for benchmarks: ``LUNA_STREAMS_MONGO_URI`` or an in-process SecantusDB;
``LUNA_STREAMS_AMQP_URL`` or the local RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from shared.core.settings import Settings
from shared.domain.models import StreamCreateV1
from tests.fault.figures import BODY
from tests.services import mongo_server


def mongo_uri() -> contextlib.AbstractContextManager[str]:
    """The same MongoDB the tests use (one place decides: tests/services.py)."""
    return mongo_server()


def bench_settings(uri: str, **extra: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        mongo_uri=uri,
        amqp_url=os.environ.get("LUNA_STREAMS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        db_name=f"bench_{tag}",
        queue_prefix=f"bench_{tag}",
        **extra,
    )


def stored_body(**extra: Any) -> dict[str, Any]:
    """The streams' create body (tests/fault/figures.py's, with ``extra``) as the service keeps
    it: validated as a v1 body, dumped as JSON; what benchmarks seed straight into MongoDB."""
    return StreamCreateV1.model_validate({**BODY, **extra}).model_dump(mode="json")


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
