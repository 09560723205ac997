"""Worker liveness: each worker process writes a heartbeat; the gateway's
``/healthcheck?include_luna_services=1`` reports components with none recent."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from pymongo.errors import PyMongoError

from shared.core.clock import now_utc
from shared.store.mongo import Database

log = logging.getLogger("luna_streams.heartbeats")

INTERVAL = 5.0
COMPONENTS = ("autorestart-worker", "log-janitor")


def instance_id(component: str) -> str:
    return f"{component}:{socket.gethostname()}:{os.getpid()}"


async def beat(database: Database, component: str) -> None:
    await database.ping()  # and the clock follows the server's
    await database.heartbeats.update_one(
        {"_id": instance_id(component)},
        {"$set": {"component": component, "seen_at": now_utc()}},
        upsert=True,
    )


async def beat_forever(database: Database, component: str) -> None:
    """Beat every :data:`INTERVAL` seconds; a missed beat is logged, the next one tried."""
    while True:
        try:
            await beat(database, component)
        except PyMongoError as exc:  # the database is away: the health check shows it
            log.warning("%s: heartbeat not written: %s", component, exc)
        await asyncio.sleep(INTERVAL)


async def silent_components(database: Database, within: float = 3 * INTERVAL) -> list[str]:
    since = now_utc() - timedelta(seconds=within)
    alive = set(await database.heartbeats.distinct("component", {"seen_at": {"$gte": since}}))
    return [c for c in COMPONENTS if c not in alive]
