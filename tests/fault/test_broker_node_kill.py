"""kill -9 the RabbitMQ node that leads the token queue, under a gateway, a queue worker and
an autorestart worker connected to a three-node cluster (``LUNA_STREAMS_AMQP_URL`` lists
the nodes; :mod:`tests.rabbitmq_cluster` starts them).

Every process is connected to the first node of the list, which declared the queues and
leads them. After the kill they move to the other nodes without a restart: claims and
feedback answer again within seconds, no pending stream is lost or claimed twice, every
feedback answered ``modified`` has its log row, and the job worker's actors still run. The
killed node is started again and rejoins the cluster.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import aiohttp
import pytest

from shared.core.settings import Settings
from shared.messaging.broker import QueueNames
from shared.store.changes import SWEEP_CURSOR
from shared.store.mongo import Database
from tests.fault.figures import Figures, claim_counts, create_streams
from tests.processes import gateway, running, worker
from tests.rabbitmq_cluster import Cluster, available, running_cluster
from tests.waits import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="Debian's rabbitmq-server is not installed"),
]

STREAMS = 60
#: a feedback row's error text: claim rows have none (tests.fault.figures.claim_counts)
REPORTED = "reported through a node kill"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster(3) as started:
        yield started


async def _sweep_cursor(database: Database) -> datetime | None:
    doc = await database.leases.find_one({"_id": SWEEP_CURSOR})
    return None if doc is None else doc["at"]


async def test_a_killed_node_is_left_for_the_others(
    settings: Settings, database: Database, cluster: Cluster
) -> None:
    figures = Figures("kill -9 the RabbitMQ node leading the token queue")
    s = settings.model_copy(update={"amqp_url": cluster.url, "reconcile_interval": 1.0})
    api = gateway(s)
    with running(api, worker("queue_worker", s), worker("autorestart_worker", s)):
        ids = await create_streams(api.url, STREAMS)
        held: dict[str, int] = {}
        modified: Counter[str] = Counter()
        recovered: dict[str, float] = {}
        killed_at = 0.0
        errors: dict[str, object] = {}  # the last error body of each kind, for the report

        async def step(session: aiohttp.ClientSession) -> None:
            """One agent round: claim up to 10, then report on everything held."""
            base = f"{api.url}/1/streams/processing"
            figures.requests_sent += 2
            try:
                async with session.post(f"{base}/queue", json={"filters": {}, "limit": 10}) as resp:
                    body = await resp.json()
                    if resp.status == 200:
                        held.update((x["stream_id"], x["version"]) for x in body["streams"])
                        if killed_at and body["streams"]:
                            recovered.setdefault("claim", time.monotonic() - killed_at)
                    else:
                        figures.request_errors += 1
                        errors[f"claim {resp.status}"] = body
                items = [
                    {"stream_id": sid, "version": v, "status": "in_progress", "error": REPORTED}
                    for sid, v in held.items()
                ]
                async with session.post(f"{base}/feedback", json={"streams": items}) as resp:
                    body = await resp.json()
                    if resp.status == 200:
                        modified.update(m["stream_id"] for m in body["streams"]["modified"])
                        if killed_at:
                            recovered.setdefault("feedback", time.monotonic() - killed_at)
                    else:
                        figures.request_errors += 1
                        errors[f"feedback {resp.status}"] = body
            except (aiohttp.ClientError, TimeoutError):
                figures.request_errors += 1

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            while len(held) < 20:
                await step(session)
            leader = cluster.leader(QueueNames(s.queue_prefix).streams)
            assert leader is cluster.nodes[0], "the first node of the list declared the queue"
            cursor_before = await _sweep_cursor(database)
            cluster.kill(leader)
            figures.faults_injected += 1
            killed_at = time.monotonic()
            deadline = killed_at + 90
            while len(held) < STREAMS or "feedback" not in recovered:
                assert time.monotonic() < deadline, (len(held), recovered, errors)
                await step(session)

        # the job worker's actors still run: the change sweep moves its cursor on
        async def swept() -> bool:
            now = await _sweep_cursor(database)
            return now is not None and (cursor_before is None or now > cursor_before)

        await wait_for(swept, timeout=30)

        counts = await claim_counts(database)
        rows: Counter[str] = Counter()
        async for row in database.stream_logs.find({"error": REPORTED}, {"stream_id": 1}):
            rows[row["stream_id"]] += 1
        figures.streams_claimed_twice = sum(1 for n in counts.values() if n > 1)
        figures.streams_lost_from_queue = len(set(ids) - set(held))
        figures.acknowledged_feedback_lost = sum(
            max(0, n - rows[sid]) for sid, n in modified.items()
        )
        figures.time_to_recover_s = round(max(recovered.values()), 2)
        figures.extra = {k: round(v, 2) for k, v in recovered.items()}
        figures.report()
        figures.assert_invariants()
        # a node's loss is a 503 (LUNA error 2) to the few requests it meets, never a 500
        assert not [k for k in errors if not k.endswith("503")], errors
        assert sorted(held) == sorted(ids)
        assert recovered["claim"] < 10 and recovered["feedback"] < 10, recovered

    cluster.start_node(leader)  # back, and a member of the cluster again
    assert len(cluster.running()) == 3
    assert leader.name in cluster.ctl(cluster.nodes[1], "cluster_status", "--formatter", "json")
