"""Mass delete: ``DELETE /1/streams`` of 3,000 streams, idle and while agents claim.

Deployment shape: the embedded server and one gateway each in their own process; the load
(agents claiming over HTTP in a loop, the DELETE requests of 1,000 ids each) from this
process. Streams are seeded with the service's own change writer (documents, log rows and
queue tokens), so agents claim them through the broker as in production. Printed:

- the delete of 3,000 streams at rest, beside the database's ceiling for the same work
  (per chunk of 100: one find, one delete_many, one insert_many of rows);
- the same delete while agents claim (3,000 doomed streams among 3,000 others): its time,
  how many doomed streams agents were handed while it ran, and after it returned (must be 0).

    python -m bench.bench_delete [--streams 3000] [--agents 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiohttp

from bench.env import bench_settings, mongo_uri, stored_body
from bench.stack import delete_queues
from shared.core.clock import now_utc
from shared.core.settings import Settings
from shared.domain.documents import new_stream
from shared.messaging.broker import open_configured_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.store.changes import StreamChanges
from shared.store.mongo import ID_CHUNK, Database, open_database
from shared.store.outbox import log_row
from tests.processes import Component, component_env, running
from tests.services import free_port

BODY = stored_body()
#: ids per DELETE request (the API's bound)
PER_REQUEST = 1000


async def seed(changes: StreamChanges, count: int, prefix: str) -> list[str]:
    """``count`` pending streams, with their rows and tokens, through the change writer."""
    ids: list[str] = []
    for start in range(0, count, ID_CHUNK):
        now = now_utc()
        docs = [
            new_stream(str(uuid.uuid4()), 1, {**BODY, "name": f"{prefix}{i}"}, [], now)
            for i in range(start, min(start + ID_CHUNK, count))
        ]
        await changes.create(docs)
        ids += [d["_id"] for d in docs]
    return ids


async def delete(session: aiohttp.ClientSession, url: str, ids: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(ids), PER_REQUEST):
        body = {"stream_ids": ids[start : start + PER_REQUEST]}
        async with session.delete(f"{url}/1/streams", json=body) as resp:
            assert resp.status == 204, await resp.text()
    return time.perf_counter() - started


async def ceiling(database: Database, changes: StreamChanges, count: int) -> float:
    """The least set-based work deleting ``count`` streams needs, straight on the server."""
    ids = await seed(changes, count, "ceiling")
    started = time.perf_counter()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = {"_id": {"$in": ids[start : start + ID_CHUNK]}}
        docs = await database.streams.find(chunk).to_list()
        await database.streams.delete_many(chunk)
        rows = [log_row(d, "deleted", d["version"], now_utc()) for d in docs]
        await database.stream_logs.insert_many(rows, ordered=False)
    return time.perf_counter() - started


async def agent(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event, got: list[tuple[float, str]]
) -> None:
    """Claim (limit 5) in a loop until ``stop``; every stream got, with when its answer came."""
    while not stop.is_set():
        body = {"filters": {}, "limit": 5}
        async with session.post(f"{url}/1/streams/processing/queue", json=body) as resp:
            answer: dict[str, Any] = await resp.json()
            assert resp.status == 200, answer
        at = time.perf_counter()
        got += [(at, s["stream_id"]) for s in answer["streams"]]
        if not answer["streams"]:
            await asyncio.sleep(0.05)


async def under_load(
    session: aiohttp.ClientSession, url: str, changes: StreamChanges, count: int, agents: int
) -> None:
    doomed = await seed(changes, count, "doomed")
    await seed(changes, count, "other")
    stop = asyncio.Event()
    got: list[tuple[float, str]] = []
    tasks = [asyncio.create_task(agent(session, url, stop, got)) for _ in range(agents)]
    await asyncio.sleep(1.0)
    claims_before = len(got)
    started = time.perf_counter()
    took = await delete(session, url, doomed)
    ended = time.perf_counter()
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*tasks)
    gone = set(doomed)
    during = sum(1 for at, sid in got if started <= at <= ended and sid in gone)
    after = sum(1 for at, sid in got if at > ended and sid in gone)
    claimed_during = sum(1 for at, _ in got if started <= at <= ended)
    print(
        f"under load ({agents} agents, {claims_before} streams claimed in the first second):"
        f" delete of {count} streams {took:.2f} s; {claimed_during} streams claimed meanwhile,"
        f" {during} of them doomed; doomed streams handed out after the delete returned: {after}"
    )


def gateway(settings: Settings) -> Component:
    port = free_port()
    env = component_env(
        settings,
        LUNA_STREAMS_PORT=str(port),
        LUNA_STREAMS_HOST="127.0.0.1",
        LUNA_STREAMS_ALLOWED_HOSTS="127.0.0.1",
    )
    return Component("gateway", env, port)


async def main(count: int, agents: int) -> None:
    with mongo_uri() as uri:
        settings: Settings = bench_settings(uri)
        database = await open_database(uri, settings.db_name)
        broker = await open_configured_broker(settings)
        changes = StreamChanges(database, BrokerTokenPublisher(broker))
        try:
            with running(gateway(settings)) as (gw,):
                timeout = aiohttp.ClientTimeout(total=900)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    roof = await ceiling(database, changes, count)
                    idle_ids = await seed(changes, count, "idle")
                    # the tokens of the idle streams are left in the queue: stale once
                    # deleted, they cost the loaded run's claims one failed compare each
                    idle = await delete(session, gw.url, idle_ids)
                    print(
                        f"idle: delete of {count} streams {idle:.2f} s; the database's ceiling"
                        f" {roof:.2f} s; ratio {idle / roof:.1f}"
                    )
                    await under_load(session, gw.url, changes, count, agents)
        finally:
            await broker.close()
            await database.client.drop_database(settings.db_name)
            await database.close()
            delete_queues(settings.amqp_url, settings.queue_prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.agents))
