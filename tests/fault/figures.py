"""What every fault scenario prints and checks at the end (design.md, invariants 1-6)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from shared.store.mongo import Database

BODY: dict[str, Any] = {
    "account_id": "557d54ec-29ad-4f3c-93b4-c9092ef12515",
    "data": {"type": "tcp", "reference": "rtsp://camera"},
    "event_handler": {
        "bestshot_handler": {"handler_id": "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"},
        "authorization": {"token": "t"},
    },
}


@dataclass
class Figures:
    scenario: str
    requests_sent: int = 0
    request_errors: int = 0
    faults_injected: int = 0
    streams_claimed_twice: int = 0
    streams_lost_from_queue: int = 0
    acknowledged_feedback_lost: int = 0
    time_to_recover_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> None:
        print(f"\nFAULT {json.dumps(asdict(self))}")

    def assert_invariants(self) -> None:
        assert self.streams_claimed_twice == 0, self
        assert self.streams_lost_from_queue == 0, self
        assert self.acknowledged_feedback_lost == 0, self


async def create_streams(url: str, count: int, chunk: int = 25) -> list[str]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> str:
            async with session.post(f"{url}/1/streams", json={**BODY, "name": f"s{i}"}) as r:
                assert r.status == 201, await r.text()
                return str((await r.json())["stream_id"])

        for start in range(0, count, chunk):
            ids += await asyncio_gather(*(one(i) for i in range(start, min(count, start + chunk))))
    return ids


async def asyncio_gather(*aws: Any) -> list[Any]:
    import asyncio

    return list(await asyncio.gather(*aws))


async def claim_counts(database: Database) -> Counter[str]:
    """How many times each stream entered in_progress: its claim log rows (feedback rows
    are in_progress too; the scenarios mark every feedback with an ``error`` text)."""
    counts: Counter[str] = Counter()
    query = {"status": "in_progress", "error": None}
    async for row in database.stream_logs.find(query, {"stream_id": 1}):
        counts[row["stream_id"]] += 1
    return counts


def marked_feedback(stream_ids: list[str], seq: int) -> list[dict[str, Any]]:
    """Feedback keeping each stream ``in_progress``, marked with an ``error`` text of its own
    (``{stream_id}:{seq}``): the log row it makes is found by its marker."""
    return [
        {"stream_id": sid, "status": "in_progress", "version": 1, "error": f"{sid}:{seq}"}
        for sid in stream_ids
    ]


def acknowledged_markers(items: list[dict[str, Any]], answer: Mapping[str, Any]) -> list[str]:
    """The markers of the items that the feedback answer says were applied."""
    modified = {m["stream_id"] for m in answer["streams"]["modified"]}
    return [i["error"] for i in items if i["stream_id"] in modified]


async def applied_markers(database: Database) -> Counter[str]:
    """How many log rows each feedback marker made: none is a lost report, two or more a
    report applied twice."""
    markers: Counter[str] = Counter()
    async for row in database.stream_logs.find({"error": {"$ne": None}}, {"error": 1}):
        markers[row["error"]] += 1
    return markers
