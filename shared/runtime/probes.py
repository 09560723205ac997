"""Every process's own health, as metrics: is its database answering, its broker connection
open, its consumer running.

:func:`probe_forever` runs beside a process's work (a task on the loop that owns the
clients) and sets :data:`~shared.telemetry.metrics.DEPENDENCY_UP` and
:data:`~shared.telemetry.metrics.CONSUMER_UP` every :data:`PROBE_EVERY` seconds, so a scrape reads
gauges and asks nothing of MongoDB or RabbitMQ itself. A probe that does not answer within
:data:`PROBE_TIMEOUT` counts as down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pymongo.errors import PyMongoError

from shared.core.errors import BackendUnavailable
from shared.store.mongo import Database
from shared.telemetry.metrics import CONSUMER_UP, DEPENDENCY_UP, MONGODB, RABBITMQ

log = logging.getLogger("luna_streams.probes")

#: seconds between two probes
PROBE_EVERY = 5.0
#: seconds a probe may take before its dependency counts as down
PROBE_TIMEOUT = 3.0


async def database_up(database: Database | None) -> bool:
    if database is None:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await database.ping()
    except (PyMongoError, BackendUnavailable, OSError, TimeoutError):
        return False
    return True


async def broker_up(is_open: Callable[[], Awaitable[bool]] | None) -> bool:
    if is_open is None:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await is_open()
    except (BackendUnavailable, OSError, TimeoutError, RuntimeError):
        return False


async def probe_once(
    database: Callable[[], Database | None],
    broker_open: Callable[[], Callable[[], Awaitable[bool]] | None],
    consumer_up: Callable[[], bool] | None = None,
    extra: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """One look at each dependency (the callables give the clients as they are now: a
    worker may reopen them)."""
    DEPENDENCY_UP.labels(dependency=MONGODB).set(await database_up(database()))
    DEPENDENCY_UP.labels(dependency=RABBITMQ).set(await broker_up(broker_open()))
    if consumer_up is not None:
        CONSUMER_UP.set(consumer_up())
    if extra is not None:
        try:
            await extra()
        except Exception:  # a bug in a sampler must not stop the probes
            log.exception("metrics sampling failed")


async def probe_forever(
    database: Callable[[], Database | None],
    broker_open: Callable[[], Callable[[], Awaitable[bool]] | None],
    consumer_up: Callable[[], bool] | None = None,
    extra: Callable[[], Awaitable[None]] | None = None,
    every: float = PROBE_EVERY,
) -> None:
    """:func:`probe_once` every ``every`` seconds, until cancelled."""
    while True:
        await probe_once(database, broker_open, consumer_up, extra)
        await asyncio.sleep(every)
