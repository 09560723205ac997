"""What metrics cost the hot path: claim and feedback throughput with metrics on and off.

Each round starts a fresh stack (``luna-streams all``, as in bench/bench_processing.py) and
drives it over HTTP: creates, then 8 agents claiming 10 at a time until the queue is empty
(streams/s), then 8 agents reporting batches of 100 as fast as answers come, "steady"
(in_progress, nothing new) and "changing" (a new video_info each time), items/s.

- on: as shipped; every process's metrics served (the workers on their ports) and scraped
  every second, 15 times Prometheus' default rate, by a thread of this process;
- off: ``bench/metrics_off/sitecustomize.py`` is loaded by every process of the stack: it
  turns prometheus_client's counters, gauges and histograms into no-ops and stops the
  probes and the fleet census; nothing is scraped, the workers serve no metrics.

Rounds alternate (off, on, off, on, ...) so that drift on a shared machine falls on both;
each figure is the median of its rounds. The cost is 1 - on / off.

    python -m bench.bench_metrics [--streams 1000] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp

from bench.bench_processing import AGENTS, BATCH, client_session
from bench.rounds import hot_path, off_and_on, rounds_parser
from bench.stack import ROOT, running_stack
from tests.services import free_port

Figures = dict[str, float]
OFF_PATH = str(ROOT / "bench" / "metrics_off")
WORKER_PORTS = (
    "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT",
    "LUNA_STREAMS_AUTORESTART_METRICS_PORT",
    "LUNA_STREAMS_JANITOR_METRICS_PORT",
)


@contextmanager
def scraping(urls: list[str], every: float) -> Iterator[list[int]]:
    """Scrape ``urls`` every ``every`` seconds in a thread; yields [scrapes, failures]."""
    counts = [0, 0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            for url in urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as resp:
                        resp.read()
                    counts[0] += 1
                except OSError:
                    counts[1] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join()


def stack_env(on: bool, ports: list[int]) -> dict[str, str]:
    if on:
        return {variable: str(port) for variable, port in zip(WORKER_PORTS, ports, strict=True)}
    return {
        "PYTHONPATH": os.pathsep.join([OFF_PATH, str(ROOT)]),
        **dict.fromkeys(WORKER_PORTS, "0"),
    }


async def scraped_claims(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('luna_streams_claims_total{outcome="streams"}'):
            return float(line.split()[-1])
    return 0.0


async def one_round(on: bool, streams: int, seconds: float) -> Figures:
    ports = [free_port() for _ in WORKER_PORTS]
    with running_stack(STREAM_STATUS_OBSOLETING_PERIOD="3600", **stack_env(on, ports)) as stack:
        urls = [f"{stack.url}/metrics"]
        if on:
            urls += [f"http://127.0.0.1:{port}/metrics" for port in ports]
        with scraping(urls if on else [], 1.0) as scrapes:
            async with client_session() as session:
                claim_rate, steady, changing = await hot_path(session, stack.url, streams, seconds)
            counted = await scraped_claims(stack.url)
    if on and (scrapes[0] == 0 or counted == 0):
        raise SystemExit(f"metrics on, but not served: {scrapes}, claims counted {counted}")
    if not on and counted:
        raise SystemExit("metrics off, but the gateway counted claims: the switch did not work")
    return {
        "claims": claim_rate,
        "steady": steady[0],
        "changing": changing[0],
        "errors": float(steady[3] + changing[3]),
        "scrapes": float(scrapes[0]),
    }


def report(results: dict[bool, list[Figures]]) -> None:
    print("metrics cost: the hot path with metrics on vs off (median of rounds)")
    print(f"{'work':40} {'off':>9} {'on':>9} {'cost':>7}   rounds (off | on)")
    for key, name in (
        ("claims", "claims: streams/s, limit 10"),
        ("steady", "feedback items/s, batches of 100, steady"),
        ("changing", "feedback items/s, batches of 100, changing"),
    ):
        off, on, rounds = off_and_on(results, key)
        print(f"{name:40} {off:9.0f} {on:9.0f} {1 - on / off:7.1%}   {rounds}")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    scrapes = sum(r["scrapes"] for r in results[True])
    print(f"feedback errors: {errors:.0f}; scrapes with metrics on: {scrapes:.0f} (every 1 s)")


def main() -> None:
    parser = rounds_parser(__doc__)
    args = parser.parse_args()
    if args.streams < AGENTS * BATCH:
        parser.error(f"--streams must be at least {AGENTS * BATCH}")
    results: dict[bool, list[Figures]] = {False: [], True: []}
    for _ in range(args.rounds):
        for on in (False, True):
            started = time.monotonic()
            figures: Any = asyncio.run(one_round(on, args.streams, args.seconds))
            results[on].append(figures)
            print(
                f"round metrics {'on ' if on else 'off'}: claims {figures['claims']:.0f}/s, "
                f"steady {figures['steady']:.0f}/s, changing {figures['changing']:.0f}/s "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    main()
