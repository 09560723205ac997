"""``python -m tests.broker_cleanup``: before a CI run, delete what earlier test and benchmark
runs on this machine left on the local RabbitMQ, and say how the broker looks.

Every test and benchmark removes its own queues, but a run that was killed cannot: its
queues stay (quorum queues, each a small Raft cluster of its own), and hundreds of them slow
every later declare. Only idle queues (no consumer) of the prefixes the tests and benchmarks
use are deleted; nothing is done when ``LUNA_STREAMS_AMQP_URL`` names another broker or
``rabbitmqctl`` is not there. The three-node clusters of :mod:`tests.rabbitmq_cluster` that a
killed run left running are stopped too. ``.ci/run`` calls it; a developer sharing a broker
need not.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aio_pika

from tests.rabbitmq_cluster import STATE, Cluster
from tests.services import LOCAL_AMQP

#: the queue prefixes of tests/conftest.py, tests/reliability, tests/integration/test_cli.py,
#: tests/browser/screenshots.py and bench/
PREFIXES = ("test_", "bench_", "shots_")


def idle_leftovers() -> tuple[int, list[str]]:
    """How many queues the local broker has, and the idle ones of our prefixes."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        return 0, []
    listed = subprocess.run(
        [rabbitmqctl, "-q", "list_queues", "name", "consumers"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split("\t") for line in listed.stdout.splitlines() if "\t" in line]
    rows = [row for row in rows if row[0] != "name"]
    leftovers = [name for name, consumers in rows if name.startswith(PREFIXES) and consumers == "0"]
    return len(rows), leftovers


async def delete(names: list[str]) -> None:
    connection = await aio_pika.connect(LOCAL_AMQP)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


def stop_left_clusters() -> int:
    """Stop the test clusters a killed run left (their folders are in the temp folder)."""
    left = [p.parent for p in Path(tempfile.gettempdir()).glob(f"luna-streams-rabbit-*/{STATE}")]
    for folder in left:
        Cluster.load(folder).stop()
    return len(left)


def main() -> int:
    clusters = stop_left_clusters()
    if clusters:
        print(f"broker cleanup: stopped {clusters} test clusters of earlier runs")
    if os.environ.get("LUNA_STREAMS_AMQP_URL"):
        print("broker cleanup: LUNA_STREAMS_AMQP_URL names a broker of its own; nothing done")
        return 0
    try:
        total, leftovers = idle_leftovers()
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"broker cleanup: rabbitmqctl did not answer ({exc}); nothing done")
        return 0
    if leftovers:
        asyncio.run(delete(leftovers))
    print(f"broker cleanup: {total} queues; deleted {len(leftovers)} idle ones of earlier runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
