"""Soak: the agent simulator on 1,000 streams with feedback every 2 s, while streams are
created, patched and deleted; reports latency per route, errors, and the RSS of the
gateway and the queue worker at start and end.

    python -m bench.soak [--minutes 10] [--streams 1000] [--agents 10] [--feedback-period 2]

Runs real processes (a gateway, a queue worker, an autorestart worker) against
``LUNA_STREAMS_MONGO_URI`` (else an embedded SecantusDB in this process) and the local
RabbitMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.env import bench_settings, mongo_uri
from shared.agent_sim import AgentConfig, AgentStats, run_agents
from tests.fault.figures import BODY
from tests.processes import Component, gateway, running, worker


def rss_mib(component: Component) -> float:
    assert component.process is not None
    for line in Path(f"/proc/{component.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


async def main(minutes: float, streams: int, agents: int, period: float) -> dict[str, Any]:
    with mongo_uri() as uri:
        settings = bench_settings(uri, stream_status_obsoleting_period=max(20.0, 5 * period))
        api = gateway(settings)
        feedback = worker("queue_worker", settings)
        restarts = worker("autorestart_worker", settings)
        with running(api, feedback, restarts):
            async with aiohttp.ClientSession() as session:
                await create(session, api.url, streams)
            duration = minutes * 60
            config = AgentConfig(
                url=api.url,
                max_streams=streams // agents + 1,
                feedback_period=period,
                request_period=1.0,
                batch_size=100,
            )
            churn_stats = AgentStats()
            until = time.monotonic() + duration
            load = asyncio.gather(
                run_agents(config, agents, duration), churn(api.url, until, churn_stats)
            )
            # warm up first (agents claim their streams, caches fill), then read RSS
            await asyncio.sleep(min(60.0, duration / 5))
            start_rss = {"gateway": rss_mib(api), "queue-worker": rss_mib(feedback)}
            agent_stats, _ = await load
            end_rss = {"gateway": rss_mib(api), "queue-worker": rss_mib(feedback)}
    agent_stats.merge(churn_stats)
    summary = agent_stats.summary()
    summary.pop("claimed_ids", None)
    report: dict[str, Any] = {
        "minutes": minutes,
        "streams": streams,
        "agents": agents,
        "feedback_period_s": period,
        "summary": summary,
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
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--feedback-period", type=float, default=2.0)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 on any error or on RSS growth over 10%%"
    )
    args = parser.parse_args()
    report = asyncio.run(main(args.minutes, args.streams, args.agents, args.feedback_period))
    if args.check:
        errors = report["summary"]["errors"]
        grown = {k: v["growth_pct"] for k, v in report["rss_mib"].items() if v["growth_pct"] > 10}
        if errors or grown:
            print(f"soak check failed: errors {errors}, RSS growth over 10% {grown}")
            raise SystemExit(1)
