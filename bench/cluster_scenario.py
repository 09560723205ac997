"""Scale-out on a clustered broker: three gateways, three queue workers, two autorestart
workers and two log janitors on a three-node RabbitMQ cluster (:mod:`tests.rabbitmq_cluster`,
or the nodes of ``LUNA_STREAMS_CLUSTER_DIR``), MongoDB as for the benchmarks.

Agents claim and report on the streams through all gateways (each agent through one, feedback
every ``--feedback-period`` seconds). Then the node leading the token queue is killed (-9) and,
after ``--phase`` seconds, started again; then the node leading the feedback queue, the same
way. (Both down at once would leave two of three members of every queue away: no quorum, no
service, by design of quorum queues.) It prints requests, faults, streams claimed twice,
pending streams lost, acknowledged feedback lost, log rows missing, and the time from each
kill until every gateway had a claim and a feedback go through.

    python -m bench.cluster_scenario [--streams 1000] [--agents 10] [--phase 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared.core.settings import Settings, node_urls
from shared.messaging.broker import QueueNames
from shared.store.mongo import Database, open_database
from tests.fault.figures import BODY, create_streams
from tests.processes import Component, gateway, running, worker
from tests.rabbitmq_cluster import running_cluster
from tests.services import mongo_server

#: the error text of every report, so feedback rows are told from claim rows
REPORTED = "cluster scenario"


@dataclass
class Tally:
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    #: stream id -> reports answered ``modified``
    modified: Counter[str] = field(default_factory=Counter)
    #: per gateway, when each claim and each feedback that was answered (200) was sent
    #: (monotonic)
    claims_at: dict[str, list[float]] = field(default_factory=dict)
    feedback_at: dict[str, list[float]] = field(default_factory=dict)


class Agent:
    def __init__(self, url: str, room: int, period: float, tally: Tally) -> None:
        self.base = f"{url}/1/streams/processing"
        self.room = room
        self.period = period
        self.tally = tally
        self.held: dict[str, int] = {}

    async def post(self, session: aiohttp.ClientSession, path: str, body: Any) -> Any:
        self.tally.requests += 1
        try:
            async with session.post(f"{self.base}/{path}", json=body) as resp:
                answer = await resp.json(content_type=None)
                if resp.status == 200:
                    return answer
                code = answer.get("error_code") if isinstance(answer, dict) else None
                self.tally.faults[f"{path} {resp.status} (LUNA error {code})"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.faults[f"{path} {type(exc).__name__}"] += 1
        return None

    async def run(self, session: aiohttp.ClientSession, until: float) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            if len(self.held) < self.room:
                sent = time.monotonic()  # a success is dated by when it was asked
                answer = await self.post(
                    session, "queue", {"filters": {}, "limit": min(50, self.room - len(self.held))}
                )
                if answer is not None:  # answered: the claim path works (empty or not)
                    self.tally.claims_at.setdefault(self.base, []).append(sent)
                    self.held.update((s["stream_id"], s["version"]) for s in answer["streams"])
            items = [
                {"stream_id": sid, "version": v, "status": "in_progress", "error": REPORTED}
                for sid, v in self.held.items()
            ]
            for start in range(0, len(items), 100):
                sent = time.monotonic()
                batch = {"streams": items[start : start + 100]}
                answer = await self.post(session, "feedback", batch)
                if answer is None:
                    continue
                self.tally.feedback_at.setdefault(self.base, []).append(sent)
                self.tally.modified.update(m["stream_id"] for m in answer["streams"]["modified"])
                for entry in answer["streams"]["unmodified"]:
                    self.held.pop(entry["stream_id"], None)  # taken back: claimed again later
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))


async def _drain(agent: Agent, session: aiohttp.ClientSession, database: Database) -> None:
    """Claim what is still pending, until nothing is (a token held by another gateway, or
    republished by the reconciler, may come a few seconds later), for a minute at most."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await agent.post(session, "queue", {"filters": {}, "limit": 100})
        if answer is not None and answer["streams"]:
            continue
        if not await database.streams.count_documents({"status": "pending"}):
            return
        await asyncio.sleep(1.0)


def _recovery(times: dict[str, list[float]], moment: float) -> float | None:
    """Seconds from ``moment`` until every gateway had a request go through (the slowest
    gateway's first success sent after it); None when one never did."""
    firsts = [min((t for t in sent if t >= moment), default=None) for sent in times.values()]
    if not firsts or any(t is None for t in firsts):
        return None
    return round(max(t - moment for t in firsts if t is not None), 2)


async def _invariants(database: Database, ids: list[str], tally: Tally) -> dict[str, int]:
    # an in_progress row is a claim's (a uuid) or a report's (``<batch id>:<index>``)
    claims: Counter[str] = Counter()
    reported: Counter[str] = Counter()
    async for row in database.stream_logs.find({"status": "in_progress"}, {"stream_id": 1}):
        (reported if ":" in row["_id"] else claims)[row["stream_id"]] += 1
    lost_handler: Counter[str] = Counter()
    async for row in database.stream_logs.find({"status": "handler_lost"}, {"stream_id": 1}):
        lost_handler[row["stream_id"]] += 1
    missing_rows = 0
    async for doc in database.streams.find({}, {"status": 1, "version": 1}):
        found = await database.stream_logs.find_one(
            {"stream_id": doc["_id"], "version": doc["version"], "status": doc["status"]}
        )
        missing_rows += found is None
    return {
        # claimed again without going back to the queue (handler lost) in between
        "streams_claimed_twice": sum(1 for sid, n in claims.items() if n > 1 + lost_handler[sid]),
        "pending_streams_lost": sum(1 for sid in ids if claims[sid] == 0),
        "acknowledged_feedback_lost": sum(
            max(0, n - reported[sid]) for sid, n in tally.modified.items()
        ),
        "log_rows_missing": missing_rows,
    }


async def operator(
    session: aiohttp.ClientSession, urls: list[str], until: float, ids: list[str], tally: Tally
) -> None:
    """New cameras keep coming (4 a second, through every gateway in turn): there is always
    something to claim, so the time to the first claim after a kill is measured."""
    n = 0
    while time.monotonic() < until:
        tally.requests += 1
        try:
            async with session.post(f"{urls[n % len(urls)]}/1/streams", json=BODY) as resp:
                if resp.status == 201:
                    ids.append((await resp.json())["stream_id"])
                else:
                    tally.faults[f"create {resp.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.faults[f"create {type(exc).__name__}"] += 1
        n += 1
        await asyncio.sleep(0.25)


def _rotated(urls: list[str], n: int) -> str:
    """Each process lists the nodes from another one first, so connections spread."""
    k = n % len(urls)
    return ",".join(urls[k:] + urls[:k])


async def scenario(streams: int, agents: int, period: float, phase: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    with mongo_server() as mongo_uri, running_cluster(3) as cluster:
        urls = node_urls(cluster.url)
        base = Settings(
            mongo_uri=mongo_uri,
            amqp_url=cluster.url,
            db_name=f"bench_{tag}",
            queue_prefix=f"bench_{tag}",
            stream_status_obsoleting_period=max(20.0, 5 * period),
        )

        def on(n: int) -> Settings:
            return base.model_copy(update={"amqp_url": _rotated(urls, n)})

        gateways = [gateway(on(n)) for n in range(3)]
        workers: list[Component] = [
            *(worker("queue_worker", on(n)) for n in range(3)),
            *(worker("autorestart_worker", on(n)) for n in range(2)),
            *(worker("log_janitor", on(n)) for n in range(2)),
        ]
        with running(*gateways, *workers):
            ids = await create_streams(gateways[0].url, streams)
            tally = Tally()
            names = QueueNames(base.queue_prefix)
            kills: list[dict[str, Any]] = []
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                # room for the operator's new cameras as well
                room = streams // agents + int(phase * 5 * 4 / agents) + 10
                until = time.monotonic() + phase * 5
                group = [Agent(gateways[n % 3].url, room, period, tally) for n in range(agents)]
                load = asyncio.gather(
                    *(a.run(session, until) for a in group),
                    operator(session, [g.url for g in gateways], until, ids, tally),
                )
                await asyncio.sleep(phase)
                for queue in (names.streams, names.feedback):
                    node = cluster.leader(queue)
                    cluster.kill(node)
                    killed = time.monotonic()
                    await asyncio.sleep(phase)
                    kills.append(
                        {
                            "queue": queue,
                            "node": node.name,
                            "claims_recovered_s": _recovery(tally.claims_at, killed),
                            "feedback_recovered_s": _recovery(tally.feedback_at, killed),
                        }
                    )
                    cluster.start_node(node)
                    await asyncio.sleep(phase / 2)
                await load
                database = await open_database(mongo_uri, base.db_name)
                try:
                    # what is still pending is claimed now: a stream nobody can claim is lost
                    await _drain(group[0], session, database)
                    figures = await _invariants(database, ids, tally)
                finally:
                    await database.client.drop_database(base.db_name)
                    await database.close()
    report = {
        "streams": streams,
        "agents": agents,
        "requests": tally.requests,
        "faults": dict(tally.faults),
        **figures,
        "kills": kills,
    }
    print(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--feedback-period", type=float, default=2.0)
    parser.add_argument("--phase", type=float, default=30.0, help="seconds between steps")
    args = parser.parse_args()
    report = asyncio.run(scenario(args.streams, args.agents, args.feedback_period, args.phase))
    bad = {
        k: report[k]
        for k in (
            "streams_claimed_twice",
            "pending_streams_lost",
            "acknowledged_feedback_lost",
            "log_rows_missing",
        )
        if report[k]
    }
    slow = [
        k
        for k in report["kills"]
        if any(
            k[key] is None or k[key] > 5 for key in ("claims_recovered_s", "feedback_recovered_s")
        )
    ]
    if bad or slow:
        print(f"scenario failed: {bad} {slow}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
