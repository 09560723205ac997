"""Invariant 2 across processes: one version of a stream is claimed by at most one agent,
however many gateways claim at once; and no pending stream is left behind (invariant 1).

Two real gateway processes over one database and one queue prefix, 20 agents claiming
concurrently, each alternating between the two gateways and, as real agents do, asking again
after an empty answer (the last tokens may be in the other gateway's buffer for a moment).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from shared.core.clock import now_utc
from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.changes import StreamChanges
from shared.store.mongo import Database
from tests.integration.factories import queue_depth, v1_body
from tests.processes import gateway, running

STREAMS = 500
AGENTS = 20
CREATE_CHUNK = 50


async def create(session: aiohttp.ClientSession, url: str, name: str) -> str:
    async with session.post(f"{url}/1/streams", json=v1_body(name=name)) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status == 201, answer
        stream_id: str = answer["stream_id"]
        return stream_id


#: how long agents keep asking once every stream is created: a token a gateway holds in
#: its buffer is only that gateway's to hand out until it goes back (LUNA_STREAMS_CLAIM_HOLD)
CLAIMS_WITHIN = 30.0
#: an agent whose claim came back empty asks again after this long, as a real one does
POLL = 0.1


async def agent(
    session: aiohttp.ClientSession, urls: list[str], seed: int, everyone: set[str], until: float
) -> tuple[list[str], int]:
    """Claim with a limit of 1..5, alternating gateways, until every stream is claimed (by
    anyone: ``everyone``) or ``until``; an empty answer is asked again after :data:`POLL`.
    Returns the stream ids it got and the number of requests it made."""
    rng = random.Random(seed)
    got: list[str] = []
    requests = 0
    while len(everyone) < STREAMS and time.monotonic() < until:
        url = urls[requests % len(urls)]
        limit = rng.randint(1, 5)
        body = {"filters": {}, "limit": limit}
        async with session.post(f"{url}/1/streams/processing/queue", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        requests += 1
        streams = answer["streams"]
        assert len(streams) <= limit
        assert all(s["status"] == "in_progress" and s["version"] == 1 for s in streams)
        got += [s["stream_id"] for s in streams]
        everyone.update(s["stream_id"] for s in streams)
        if not streams:
            await asyncio.sleep(POLL)
    return got, requests


@pytest.mark.slow
async def test_two_gateways_twenty_agents_claim_each_stream_once(
    settings: Settings, database: Database
) -> None:
    with running(gateway(settings), gateway(settings)) as gateways:
        urls = [g.url for g in gateways]
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            started = time.monotonic()
            ids: list[str] = []
            for first in range(0, STREAMS, CREATE_CHUNK):
                ids += await asyncio.gather(
                    *(
                        create(session, urls[n % 2], f"s{n}")
                        for n in range(first, min(first + CREATE_CHUNK, STREAMS))
                    )
                )
            created = time.monotonic() - started
            assert len(set(ids)) == STREAMS
            assert await queue_depth(settings, QueueNames(settings.queue_prefix).streams) == STREAMS

            started = time.monotonic()
            everyone: set[str] = set()
            until = started + CLAIMS_WITHIN
            answers = await asyncio.gather(
                *(
                    agent(session, urls if n % 2 else urls[::-1], n, everyone, until)
                    for n in range(AGENTS)
                )
            )
            claimed_in = time.monotonic() - started

    taken = [stream_id for got, _ in answers for stream_id in got]
    requests = sum(count for _, count in answers)
    duplicates = [sid for sid, times in Counter(taken).items() if times > 1]
    assert duplicates == [], f"{len(duplicates)} streams claimed more than once"
    assert sorted(taken) == sorted(ids)  # every stream claimed (in time), exactly once

    rows = await database.stream_logs.find({"status": "in_progress"}, {"stream_id": 1}).to_list()
    per_stream = Counter(row["stream_id"] for row in rows)
    assert per_stream == Counter(ids)  # exactly one in_progress log row per stream
    assert await database.streams.count_documents({"status": "in_progress"}) == STREAMS
    # every claim wrote its rows itself: the change sweep finds nothing left to finish
    later = now_utc() + timedelta(minutes=1)
    assert await StreamChanges(database, None).sweep(timedelta(seconds=10), now=later) == 0
    assert await queue_depth(settings, QueueNames(settings.queue_prefix).streams) == 0
    print(
        f"\n{STREAMS} streams created through 2 gateways in {created:.1f} s "
        f"({STREAMS / created:.0f}/s); claimed by {AGENTS} agents in {claimed_in:.1f} s: "
        f"{STREAMS / claimed_in:.0f} streams/s, {requests} claim requests "
        f"({requests / claimed_in:.0f} req/s), per agent "
        f"{min(len(g) for g, _ in answers)}..{max(len(g) for g, _ in answers)} streams"
    )
