"""The hot path in the deployment shape, beside the database's own ceiling.

The stack runs as users run it (``luna-streams all``: every component its own process, the
embedded MongoDB-wire server its own process unless ``LUNA_STREAMS_MONGO_URI`` names one);
this process drives it over HTTP, as agents and operators do, and measures:

- creates/s with 16 requests in flight;
- claims: streams/s with 8 agents claiming 10 at a time until the queue is empty;
- feedback: items/s, p50 and p99, with 8 agents each reporting a batch of 100 streams as
  fast as answers come: "steady" reports (in_progress, the same video_info: what a fleet
  sends most) and "changing" reports (a new video_info every time: every report rewrites
  its stream).

What each process costs: the CPU seconds (``/proc/PID/stat``: user + system) each component
spends per 1,000 streams claimed and per 1,000 feedback items (reports) in each phase, and the
database writes per 1,000 (write commands, from ``serverStatus`` opcounters, and log rows
inserted): the figures of the sizing guide in docs/running.md.

Beside each figure, the database's ceiling for the same work: the least set-based work it
needs, done directly on the same server, in the same run, while the service is idle, with
the write concern the service uses (journaled), by one writer or as many as there are
agents, whichever is faster: per claim of 10
and per feedback batch of 100, one find by ids, one unordered bulk write of guarded updates
on copies of the real stream documents (in a collection with the same indexes), one insert
of the log rows. Claims are also set beside the index-free ceiling: the same work on a
collection with only the ``_id`` index.

    python -m bench.bench_processing [--streams 2000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from bench.stack import CpuMeter, Stack, peak_rss_mib, running_stack
from cli.agent_sim import video_info as sim_video_info
from shared.store.mongo import INDEXES, STREAM_LOGS, STREAMS
from tests.fault.figures import BODY

VIDEO_INFO = sim_video_info(0.0, "2026-01-01T00:00:00.000Z")
AGENTS = 8
CLAIM_LIMIT = 10
BATCH = 100
CREATORS = 16
#: feedback items/s a fleet of 1,000 cameras reporting every 2 s offers
FLEET = 500.0
Doc = dict[str, Any]
#: (items/s, p50 s, p99 s, errors, items)
Figures = tuple[float, float, float, int, int]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client_session(token: str | None = None) -> aiohttp.ClientSession:
    """The session of this process's agents and operators: 64 connections, 60 s a request,
    with ``token`` (authentication on) as its bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=64),
        headers=headers,
    )


async def creates(session: aiohttp.ClientSession, url: str, count: int) -> tuple[float, int]:
    """(creates/s, errors) with CREATORS requests in flight."""
    todo = iter(range(count))
    errors = 0

    async def creator() -> None:
        nonlocal errors
        for i in todo:
            async with session.post(f"{url}/1/streams", json={**BODY, "name": f"b{i}"}) as r:
                errors += r.status != 201
                await r.read()

    started = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(CREATORS)))
    return count / (time.perf_counter() - started), errors


async def claims(session: aiohttp.ClientSession, url: str) -> tuple[float, list[Doc]]:
    """(streams/s, the streams claimed) with AGENTS agents claiming until the queue is empty."""
    got: list[Doc] = []

    async def agent() -> None:
        empty = 0
        while empty < 3:  # the queue may refill between two claims: three empty answers
            async with session.post(
                f"{url}/1/streams/processing/queue",
                json={"filters": {}, "limit": CLAIM_LIMIT},
            ) as resp:
                answer = await resp.json()
                if resp.status != 200:
                    raise SystemExit(f"claim answered {resp.status}: {answer}")
                streams = answer["streams"]
            got.extend(streams)
            empty = 0 if streams else empty + 1

    started = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(AGENTS)))
    return len(got) / (time.perf_counter() - started), got


def video_info(frame: int) -> Doc:
    """What an agent reports of a camera; ``frame`` > 0 changes it with every report."""
    return {**VIDEO_INFO, "bit_rate": VIDEO_INFO["bit_rate"] + frame}


def report_body(mine: list[Doc], frame: int) -> Doc:
    """One agent's report on its streams: in_progress, with this video_info."""
    return {
        "streams": [
            {
                "stream_id": s["stream_id"],
                "version": s["version"],
                "status": "in_progress",
                "error": None,
                "video_info": video_info(frame),
            }
            for s in mine
        ]
    }


async def feedback(
    session: aiohttp.ClientSession,
    url: str,
    streams: list[Doc],
    seconds: float,
    changing: bool,
    offered: float | None = None,
) -> Figures:
    """(items/s, p50 s, p99 s, errors, items): AGENTS agents, each a batch of its BATCH streams,
    as fast as answers come or, with ``offered`` (items/s), each on its own fixed period
    (staggered, as a fleet reports; an agent whose answer comes late sends at once)."""
    latencies: list[float] = []
    errors = 0
    items = 0
    until = time.monotonic() + seconds
    period = AGENTS * BATCH / offered if offered else 0.0

    async def agent(n: int, mine: list[Doc]) -> None:
        nonlocal errors, items
        frame = 0
        await asyncio.sleep(period * n / AGENTS)
        due = time.monotonic()
        while time.monotonic() < until:
            due += period
            await asyncio.sleep(max(0.0, due - period - time.monotonic()))
            frame += 1
            body = report_body(mine, frame if changing else 0)
            started = time.perf_counter()
            async with session.post(f"{url}/1/streams/processing/feedback", json=body) as r:
                answer = await r.json()
            latencies.append(time.perf_counter() - started)
            if r.status != 200 or answer["streams"]["unmodified"]:
                if not errors:
                    print(f"feedback answered {r.status}: {str(answer)[:300]}")
                errors += 1
                await asyncio.sleep(0.1)
            else:
                items += len(answer["streams"]["modified"])

    started = time.perf_counter()
    await asyncio.gather(*(agent(i, streams[i * BATCH : (i + 1) * BATCH]) for i in range(AGENTS)))
    elapsed = time.perf_counter() - started
    return items / elapsed, pct(latencies, 0.5), pct(latencies, 0.99), errors, items


async def first_report(session: aiohttp.ClientSession, url: str, mine: list[Doc]) -> None:
    async with session.post(f"{url}/1/streams/processing/feedback", json=report_body(mine, 0)) as r:
        if r.status != 200:
            raise SystemExit(f"first report answered {r.status}: {await r.text()}")


async def first_reports(session: aiohttp.ClientSession, url: str, mine: list[Doc]) -> None:
    """Each agent's first report of its BATCH streams of ``mine``, one agent after another."""
    for n in range(AGENTS):
        await first_report(session, url, mine[n * BATCH : (n + 1) * BATCH])


# --- the database's ceiling ----------------------------------------------------------------


async def ceiling(
    stack: Stack, per_op: int, concurrency: int, seconds: float, indexed: bool = True
) -> float:
    """Documents/s of find + guarded bulk update + log insert, ``per_op`` documents each,
    on copies of the stack's real stream documents, in a scratch database: in a collection
    with the indexes of ``streams`` (``indexed``), or with only the ``_id`` index."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongo_uri, journal=True, tz_aware=True)
    try:
        real = await client[stack.db_name].streams.find({}, {"outbox": 0}).to_list(None)
        scratch = client[f"{stack.db_name}_ceiling"]
        await scratch.streams.drop()
        await scratch.logs.drop()
        # the same collection as the service's: its indexes cost every write
        if indexed:
            await scratch.streams.create_indexes(INDEXES[STREAMS])
        await scratch.logs.create_indexes(INDEXES[STREAM_LOGS])
        copies = [
            {**doc, "_id": str(uuid.uuid4()), "status": "in_progress", "claim": {}} for doc in real
        ]
        await scratch.streams.insert_many(copies)
        ids = [doc["_id"] for doc in copies]
        done = 0
        until = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            nonlocal done
            position = offset * per_op
            while time.monotonic() < until:
                chunk = [ids[(position + i) % len(ids)] for i in range(per_op)]
                position += concurrency * per_op
                await one_op(scratch.streams, scratch.logs, chunk, done)
                done += per_op

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        rate = done / (time.perf_counter() - started)
        await client.drop_database(f"{stack.db_name}_ceiling")
        return rate
    finally:
        await client.close()


async def one_op(
    streams: AsyncCollection[Doc], logs: AsyncCollection[Doc], ids: list[str], n: int
) -> None:
    docs = await streams.find({"_id": {"$in": ids}}).to_list(None)
    now = datetime.now(UTC)
    await streams.bulk_write(
        [
            UpdateOne(
                {"_id": d["_id"], "status": "in_progress", "version": d["version"]},
                {"$set": {"video_info": video_info(n), "claim.last_feedback_at": now}},
                hint="_id_",
            )
            for d in docs
        ],
        ordered=False,
    )
    await logs.insert_many(
        [
            {
                "_id": str(uuid.uuid4()),
                "stream_id": d["_id"],
                "account_id": d["account_id"],
                "log_time": now,
                "status": "in_progress",
                "version": d["version"],
                "video_info": video_info(n),
            }
            for d in docs
        ],
        ordered=False,
    )


async def best_ceiling(stack: Stack, per_op: int, seconds: float, indexed: bool = True) -> float:
    """The better of one writer and as many writers as agents (the embedded server does
    fewer documents a second with more concurrent writers)."""
    return max([await ceiling(stack, per_op, n, seconds, indexed) for n in (1, AGENTS)])


# --- what each process costs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cost:
    """One phase: how much work, the CPU seconds each process spent, the database's writes."""

    phase: str
    unit: str  # "claims" or "reports"
    count: int
    cpu: dict[str, float]
    write_commands: int
    log_rows: int


class CostMeter:
    """Readings between phases: each process's CPU (``/proc``), the server's write commands
    (``serverStatus`` opcounters: insert + update + delete) and the stream log rows."""

    def __init__(self, stack: Stack, client: AsyncMongoClient[Doc]) -> None:
        self.stack = stack
        self.client = client
        self.cpu = CpuMeter(stack.pid)
        self.costs: list[Cost] = []
        self.peak_rss: dict[str, float] = {}
        self._writes = (0, 0)

    async def _db_writes(self) -> tuple[int, int]:
        status = await self.client.admin.command("serverStatus")
        ops = status["opcounters"]
        rows = await self.client[self.stack.db_name][STREAM_LOGS].estimated_document_count()
        return ops["insert"] + ops["update"] + ops["delete"], rows

    async def start(self) -> None:
        """Forget what was spent since the last reading (work that is not measured)."""
        self.cpu.lap()
        self._writes = await self._db_writes()

    async def phase(self, phase: str, unit: str, count: int) -> None:
        cpu = self.cpu.lap()
        before, self._writes = self._writes, await self._db_writes()
        commands, rows = (now - then for now, then in zip(self._writes, before, strict=True))
        self.costs.append(Cost(phase, unit, count, cpu, commands, rows))
        self.peak_rss = {name: peak_rss_mib(pid) for name, pid in self.cpu.pids.items()}


def report_costs(costs: list[Cost], peak_rss: dict[str, float]) -> None:
    names = list(costs[0].cpu)
    print()
    print("cost per 1,000: CPU seconds of each process (user + system), database writes")
    print(
        f"{'phase':34} {'count':>7} "
        + " ".join(f"{name:>18}" for name in names)
        + f" {'write cmds':>10} {'log rows':>9}"
    )
    for cost in costs:
        per = 1000 / cost.count if cost.count else 0.0
        print(
            f"{cost.phase + ' (' + cost.unit + ')':34} {cost.count:7d} "
            + " ".join(f"{cost.cpu[name] * per:18.3f}" for name in names)
            + f" {cost.write_commands * per:10.1f} {cost.log_rows * per:9.1f}"
        )
    print("(write commands as the server counts them: one per insert/update/delete command,")
    print("a bulk write of N documents is one; log rows: documents added to stream_logs)")
    print("peak RSS, MiB: " + ", ".join(f"{name} {mib:.0f}" for name, mib in peak_rss.items()))


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def run(streams: int, seconds: float) -> None:
    # agents that claim and do not report yet must not lose their streams meanwhile
    with running_stack(STREAM_STATUS_OBSOLETING_PERIOD="3600") as stack:
        client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
        async with client_session() as session, client:
            create_rate, create_errors = await creates(session, stack.url, streams)
            await settle(2)
            claim_ceiling = await best_ceiling(stack, CLAIM_LIMIT, seconds / 2)
            bare_ceiling = await best_ceiling(stack, CLAIM_LIMIT, seconds / 2, indexed=False)
            feedback_ceiling = await best_ceiling(stack, BATCH, seconds / 2)
            meter = CostMeter(stack, client)
            await meter.start()
            claim_rate, claimed = await claims(session, stack.url)
            await meter.phase("claims, limit 10", "claims", len(claimed))
            needed = AGENTS * BATCH
            if len(claimed) < needed:
                raise SystemExit(f"only {len(claimed)} streams claimed, {needed} needed")
            mine = claimed[:needed]
            # the agents' first reports (video_info appears), one agent after another: a
            # running fleet is past them
            await meter.start()
            first_started = time.perf_counter()
            await first_reports(session, stack.url, mine)
            first_seconds = time.perf_counter() - first_started
            await meter.phase("first reports, one batch at a time", "reports", needed)
            print(f"first reports: {needed} in {first_seconds:.2f} s")
            await meter.start()
            steady = await feedback(session, stack.url, mine, seconds, changing=False)
            await meter.phase("steady, flat out", "reports", steady[4])
            # the same work offered at a rate: the fleet of the soak (1,000 cameras every
            # 2 s), then reports that rewrite their streams, at 0.7 of the ceiling
            fleet = await feedback(session, stack.url, mine, seconds, False, offered=FLEET)
            await meter.phase(f"steady, offered {FLEET:.0f}/s", "reports", fleet[4])
            changing = await feedback(session, stack.url, mine, seconds, changing=True)
            await meter.phase("changing, flat out", "reports", changing[4])
            target = 0.7 * feedback_ceiling
            paced = await feedback(session, stack.url, mine, seconds, True, offered=target)
            await meter.phase(f"changing, offered {target:.0f}/s", "reports", paced[4])
    report(
        streams,
        (create_rate, create_errors),
        (claim_rate, len(claimed), claim_ceiling, bare_ceiling),
        (steady, changing, feedback_ceiling),
        ((fleet, FLEET), (paced, target)),
    )
    report_costs(meter.costs, meter.peak_rss)


def report(
    streams: int,
    create: tuple[float, int],
    claim: tuple[float, int, float, float],
    fb: tuple[Figures, Figures, float],
    offered: tuple[tuple[Figures, float], tuple[Figures, float]],
) -> None:
    print(f"luna-streams hot path, deployment shape ({streams} streams, {AGENTS} agents)")
    print(f"{'work':44} {'service':>9} {'ceiling':>9} {'share':>6}  latency p50/p99")
    print(f"{'creates/s, 16 in flight':44} {create[0]:9.0f} {'-':>9} {'-':>6}  errors {create[1]}")
    rate, count, top, bare = claim
    print(
        f"{'claims: streams/s, limit 10':44} {rate:9.0f} {top:9.0f} {rate / top:6.2f}  "
        f"({count} claimed)"
    )
    print(
        f"{'  the same, against the index-free ceiling':44} {rate:9.0f} {bare:9.0f} "
        f"{rate / bare:6.2f}  (a collection with only the _id index)"
    )
    steady, changing, top = fb
    for name, (items, p50, p99, errors, _) in (
        ("feedback items/s, batches of 100, steady", steady),
        ("feedback items/s, batches of 100, changing", changing),
    ):
        print(
            f"{name:44} {items:9.0f} {top:9.0f} {items / top:6.2f}  "
            f"{p50 * 1000:.0f}/{p99 * 1000:.0f} ms, errors {errors}"
        )
    (fleet, fleet_rate), (paced, paced_rate) = offered
    for name, (items, p50, p99, errors, _) in (
        (f"  offered {fleet_rate:.0f}/s (1,000 cameras / 2 s), steady", fleet),
        (f"  offered {paced_rate:.0f}/s (0.7 of ceiling), changing", paced),
    ):
        print(
            f"{name:44} {items:9.0f} {top:9.0f} {items / top:6.2f}  "
            f"{p50 * 1000:.0f}/{p99 * 1000:.0f} ms, errors {errors}"
        )
    print("ceiling = find by ids + unordered bulk write of guarded updates + insert of log")
    print("rows, journaled, same server, same run, service idle, best of 1 or 8 writers, on")
    print("a collection with the indexes of streams (index-free: only the _id index)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(run(args.streams, args.seconds))


if __name__ == "__main__":
    main()
