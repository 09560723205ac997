"""Soak: the agent simulator on 1,000 streams with feedback every 2 s, while streams are
created, patched and deleted; reports latency per route, errors, handler_lost rows, the
streams the operator never touched that are not ``in_progress`` at the end, and the RSS of
the gateway and the queue worker at start and end.

It starts from cold, as a fleet's morning or the restart after maintenance does: a fresh
stack, the streams created, then every agent starts at once, claims its streams and sends
its first reports (video_info and preview appear). The warm-up is part of the figures:
the feedback and claim latency of each minute (p50/p99) and of the whole run are printed
as a table after the JSON report, with the share of the report items that fell due on
the streams the operator never touched that were answered (each agent's first report comes
at a random moment of its first period: the moments before it are not due).

    python -m bench.soak [--minutes 10] [--streams 1000] [--agents 10] [--feedback-period 2]

Runs the stack as users run it (``luna-streams all``: every component its own process, the
embedded server its own process unless ``LUNA_STREAMS_MONGO_URI`` names a MongoDB) and the
local RabbitMQ, and drives it over HTTP from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient

from bench.stack import Stack, children_of, rss_mib, running_stack
from cli.agent_sim import AgentConfig, AgentStats, run_agents
from tests.fault.figures import BODY


async def end_state(stack: Stack, untouched: list[str]) -> tuple[int, dict[str, int]]:
    """What should be nothing at the end: handler_lost rows (streams the agents held but
    lost to the handler-lost rule), and the statuses of the streams the operator never
    touched that are not ``in_progress`` (``gone``: deleted), when every one was claimed
    and reported on throughout."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        database = client[stack.db_name]
        lost = await database.stream_logs.count_documents({"status": "handler_lost"})
        found = database.streams.find({"_id": {"$in": untouched}}, {"status": 1})
        statuses = Counter([doc["status"] async for doc in found])
    finally:
        await client.close()
    left = {status: n for status, n in statuses.items() if status != "in_progress"}
    if (gone := len(untouched) - statuses.total()) > 0:
        left["gone"] = gone
    return lost, left


async def create(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 50):

        async def one(i: int) -> str:
            async with session.post(f"{url}/1/streams", json={**BODY, "name": f"soak{i}"}) as r:
                return str((await r.json())["stream_id"])

        ids += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
    return ids


async def churn(url: str, until: float, stats: AgentStats) -> None:
    """An operator at work: create, patch (pause, back to pending), delete."""
    async with aiohttp.ClientSession() as session:
        mine: list[str] = []
        while time.monotonic() < until:
            action = random.choice(["create", "patch", "delete"] if mine else ["create"])
            started = time.perf_counter()
            try:
                if action == "create":
                    async with session.post(f"{url}/1/streams", json=BODY) as resp:
                        ok = resp.status == 201
                        if ok:
                            mine.append((await resp.json())["stream_id"])
                elif action == "patch":
                    status = random.choice(["pause", "pending"])
                    async with session.patch(
                        f"{url}/1/streams/{random.choice(mine)}", json={"status": status}
                    ) as resp:
                        ok = resp.status == 204
                else:
                    sid = mine.pop(random.randrange(len(mine)))
                    async with session.delete(f"{url}/1/streams/{sid}") as resp:
                        ok = resp.status == 204
            except aiohttp.ClientError:
                ok = False
            stats.observe(action, time.perf_counter() - started)
            if not ok:
                stats.error(action)
            await asyncio.sleep(0.5)


async def main(
    minutes: float, streams: int, agents: int, period: float, in_step: bool = False
) -> dict[str, Any]:
    obsoleting = str(max(20.0, 5 * period))
    with running_stack(STREAM_STATUS_OBSOLETING_PERIOD=obsoleting) as stack:
        pids = children_of(stack.pid)
        watched = {"gateway": pids["gateway"], "queue-worker": pids["queue_worker"]}
        async with aiohttp.ClientSession() as session:
            untouched = await create(session, stack.url, streams)
        duration = minutes * 60
        config = AgentConfig(
            url=stack.url,
            max_streams=streams // agents + 1,
            feedback_period=period,
            request_period=1.0,
            batch_size=100,
            stagger=not in_step,
        )
        churn_stats = AgentStats()
        started = time.monotonic()
        until = started + duration
        load = asyncio.gather(
            run_agents(config, agents, duration), churn(stack.url, until, churn_stats)
        )
        # warm up first (agents claim their streams, caches fill), then read RSS
        await asyncio.sleep(min(60.0, duration / 5))
        start_rss = {k: rss_mib(pid) for k, pid in watched.items()}
        agent_stats, _ = await load
        end_rss = {k: rss_mib(pid) for k, pid in watched.items()}
        lost, left = await end_state(stack, untouched)
    agent_stats.merge(churn_stats)
    # what the fleet offered: at every report moment of each agent (its first at a random
    # moment of its first period), a report on its share of the untouched streams; what
    # was absorbed: the answered items of those streams (the operator's own come and go)
    due = agent_stats.reports_due * len(untouched) / agents
    answered = sum(agent_stats.answered[sid] for sid in untouched)
    summary = agent_stats.summary()
    summary.pop("claimed_ids", None)
    per_minute = agent_stats.by_period(started, 60.0)
    report: dict[str, Any] = {
        "minutes": minutes,
        "streams": streams,
        "agents": agents,
        "feedback_period_s": period,
        "agents_in_step": in_step,
        "summary": summary,
        "untouched_items": {"due": round(due), "answered": answered},
        "handler_lost_rows": lost,
        "untouched_streams_not_in_progress": left,
        "latency_ms_per_minute": per_minute,
        "rss_mib": {
            k: {
                "start": round(start_rss[k], 1),
                "end": round(end_rss[k], 1),
                "growth_pct": round(100 * (end_rss[k] / start_rss[k] - 1), 1),
            }
            for k in start_rss
        },
    }
    print(json.dumps(report, indent=2))
    print_table(report)
    return report


def absorbed(report: dict[str, Any]) -> float:
    """Feedback items answered per second over the run."""
    summary = report["summary"]
    return (summary["modified"] + summary["unmodified"]) / (report["minutes"] * 60)


def absorbed_share(report: dict[str, Any]) -> float:
    """The share of the untouched streams' report items that fell due and were answered:
    a service that claims slowly, answers slowly (the agents' reports fall behind) or
    refuses reports absorbs less; the agents' random first moments do not count."""
    items = report["untouched_items"]
    return float(items["answered"] / items["due"]) if items["due"] else 0.0


def print_table(report: dict[str, Any]) -> None:
    """Feedback and claim latency per minute and over the whole run, warm-up included."""
    offered = report["streams"] / report["feedback_period_s"]
    items = report["untouched_items"]
    print(
        f"feedback absorbed: {items['answered']} of {items['due']} items due on the untouched "
        f"streams ({100 * absorbed_share(report):.1f} %); {absorbed(report):.0f} items/s "
        f"answered over the run, {offered:.0f} offered at full strength"
    )
    print(f"{'minute':>8} " + " ".join(f"{r + ' p50/p99 ms':>24}" for r in ("feedback", "claim")))
    per_minute = report["latency_ms_per_minute"]
    slots = max(len(per_minute.get(route, [])) for route in ("feedback", "claim"))
    for slot in range(slots):
        cells = []
        for route in ("feedback", "claim"):
            rows = [r for r in per_minute.get(route, []) if r["from_s"] == slot * 60.0]
            cells.append(
                f"{rows[0]['p50']:.0f}/{rows[0]['p99']:.0f} (n {rows[0]['n']})" if rows else "-"
            )
        print(f"{slot + 1:>8} " + " ".join(f"{cell:>24}" for cell in cells))
    whole = report["summary"]["latency_ms"]
    cells = [
        f"{whole[route]['p50']:.0f}/{whole[route]['p99']:.0f} (n {whole[route]['n']})"
        if route in whole
        else "-"
        for route in ("feedback", "claim")
    ]
    print(f"{'run':>8} " + " ".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--feedback-period", type=float, default=2.0)
    parser.add_argument(
        "--in-step",
        action="store_true",
        help="every agent reports at the same instants (a fleet restarted at once: the "
        "worst case); by default each starts at a random moment of its first period",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 on any error, handler_lost row or untouched stream no longer in_progress, "
        "on RSS growth over 10%%, on a feedback p99 of 1 s or more or under 0.98 of the "
        "items due on the untouched streams absorbed, or on a claim p50 of 100 ms or p99 "
        "of 500 ms or more (whole run, warm-up included)",
    )
    args = parser.parse_args()
    report = asyncio.run(
        main(args.minutes, args.streams, args.agents, args.feedback_period, args.in_step)
    )
    if args.check:
        errors = report["summary"]["errors"]
        grown = {k: v["growth_pct"] for k, v in report["rss_mib"].items() if v["growth_pct"] > 10}
        left = report["untouched_streams_not_in_progress"]
        p99 = report["summary"]["latency_ms"]["feedback"]["p99"]
        claim = report["summary"]["latency_ms"].get("claim", {"p50": 0.0, "p99": 0.0})
        short = absorbed_share(report) < 0.98
        slow_claims = claim["p50"] >= 100 or claim["p99"] >= 500
        lost = report["handler_lost_rows"]
        if errors or grown or lost or left or p99 >= 1000 or short or slow_claims:
            print(
                f"soak check failed: errors {errors}, RSS growth over 10% {grown}, "
                f"handler_lost rows {report['handler_lost_rows']}, untouched streams no "
                f"longer in_progress {left}, feedback p99 {p99} ms, absorbed "
                f"{100 * absorbed_share(report):.1f} % of the items due, claims p50/p99 "
                f"{claim['p50']}/{claim['p99']} ms"
            )
            raise SystemExit(1)
