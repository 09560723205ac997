"""Worker liveness: each worker process writes a heartbeat; the gateway's
``/healthcheck?include_luna_services=1`` reports components with none recent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import timedelta

from shared.clock import now_utc
from shared.mongo import Database

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
    while True:
        with contextlib.suppress(Exception):  # the database is away: try again next time
            await beat(database, component)
        await asyncio.sleep(INTERVAL)


async def silent_components(database: Database, within: float = 3 * INTERVAL) -> list[str]:
    since = now_utc() - timedelta(seconds=within)
    alive = set(await database.heartbeats.distinct("component", {"seen_at": {"$gte": since}}))
    return [c for c in COMPONENTS if c not in alive]
