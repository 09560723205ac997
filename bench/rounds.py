"""What the on/off cost benchmarks (bench_auth, bench_metrics, bench_tracing) share: their
options, and the hot path a round drives over HTTP (bench/bench_processing.py's pieces).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import aiohttp

from bench.bench_processing import (
    AGENTS,
    BATCH,
    Doc,
    Figures,
    claims,
    creates,
    feedback,
    first_reports,
)


def rounds_parser(doc: str) -> argparse.ArgumentParser:
    """``--streams`` (1000), ``--seconds`` (10) and ``--rounds`` (2), described by the first
    paragraph of ``doc`` (the benchmark's docstring)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    return parser


async def claim_for_agents(session: aiohttp.ClientSession, url: str) -> tuple[float, list[Doc]]:
    """(claims: streams/s, the agents' streams): every pending stream claimed, then each
    agent's first report of its batch; AGENTS * BATCH streams, the agents' from then on."""
    claim_rate, claimed = await claims(session, url)
    mine = claimed[: AGENTS * BATCH]
    await first_reports(session, url, mine)
    return claim_rate, mine


async def hot_path(
    session: aiohttp.ClientSession, url: str, streams: int, seconds: float
) -> tuple[float, Figures, Figures]:
    """(claims: streams/s, steady, changing): ``streams`` creates, 2 s for the queue to
    settle, the claims, then ``seconds`` of steady feedback and ``seconds`` of changing."""
    await creates(session, url, streams)
    await asyncio.sleep(2)
    claim_rate, mine = await claim_for_agents(session, url)
    steady = await feedback(session, url, mine, seconds, changing=False)
    changing = await feedback(session, url, mine, seconds, changing=True)
    return claim_rate, steady, changing


def off_and_on(results: dict[bool, list[dict[str, float]]], key: str) -> tuple[float, float, str]:
    """(off, on, rounds): the median of ``key`` over the rounds off and over those on, and
    every round's figure, ``"off off | on on"``."""
    off = statistics.median(r[key] for r in results[False])
    on = statistics.median(r[key] for r in results[True])
    rounds = " ".join(f"{r[key]:.0f}" for r in results[False])
    rounds += " | " + " ".join(f"{r[key]:.0f}" for r in results[True])
    return off, on, rounds
