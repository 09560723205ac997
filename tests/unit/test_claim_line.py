"""The line of unfiltered claims, with rounds of a stand-in queue: oldest first, each claim
answered when a round gave it streams, none kept waiting long, no claimed stream dropped."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.core.types import Doc
from shared.services.claim_line import CLAIM_ROUND, ClaimLine


class Queue:
    """Pending streams; a round takes up to ``n`` of them in ``seconds``."""

    def __init__(self, count: int, seconds: float = 0.0, stale: int = 0) -> None:
        self.pending = [{"_id": str(n)} for n in range(count)]
        self.stale = stale  # tokens that claim nothing, before the pending ones
        self.seconds = seconds
        self.rounds: list[int] = []

    async def round(self, n: int) -> tuple[list[Doc], int]:
        self.rounds.append(n)
        await asyncio.sleep(self.seconds)
        if self.stale:
            taken = min(n, self.stale)
            self.stale -= taken
            return [], taken
        claimed, self.pending = self.pending[:n], self.pending[n:]
        return claimed, len(claimed)


async def test_a_lone_claim_gets_its_limit_in_rounds() -> None:
    queue = Queue(120)
    line = ClaimLine(queue.round)
    got = await line.submit(101)
    assert [d["_id"] for d in got] == [str(n) for n in range(101)]
    assert queue.rounds == [CLAIM_ROUND, CLAIM_ROUND, 1]


async def test_claims_in_line_are_answered_one_by_one_oldest_first() -> None:
    queue = Queue(1000, seconds=0.01)
    line = ClaimLine(queue.round)
    answered: list[tuple[int, float]] = []

    async def claim(n: int) -> list[Doc]:
        got = await line.submit(100)
        answered.append((n, time.monotonic()))
        return got

    hands = await asyncio.gather(*(claim(n) for n in range(4)))
    # each claim was answered after the round that gave it streams, not all at the end
    assert [n for n, _ in answered] == [0, 1, 2, 3]
    assert len({round(at, 3) for _, at in answered}) == 4
    # one round each while others wait; the last one, alone, gets its limit
    assert [len(hand) for hand in hands] == [CLAIM_ROUND] * 3 + [100]
    dealt = [d["_id"] for hand in hands for d in hand]
    assert dealt == [str(n) for n in range(3 * CLAIM_ROUND + 100)]  # each once, in order


async def test_no_claim_waits_long_behind_slow_rounds() -> None:
    queue = Queue(10_000, seconds=0.1)
    line = ClaimLine(queue.round, answer_by=0.25)
    started = time.monotonic()
    hands = await asyncio.gather(*(line.submit(100) for _ in range(10)))
    waited = time.monotonic() - started
    assert waited < 0.25 + 0.1 + 0.05  # its time, and the round in flight
    assert hands[0] and not hands[-1]  # the last ones were answered with nothing
    claimed = [d["_id"] for hand in hands for d in hand]
    assert claimed == [str(n) for n in range(len(claimed))]  # none dropped


async def test_an_empty_queue_answers_everyone_at_once() -> None:
    queue = Queue(30)
    line = ClaimLine(queue.round)
    hands = await asyncio.gather(*(line.submit(100) for _ in range(3)))
    assert sorted(len(hand) for hand in hands) == [0, 0, 30]
    assert len(queue.rounds) == 2  # the round that emptied it, the one that found it empty


async def test_stale_tokens_do_not_keep_a_claim_busy() -> None:
    queue = Queue(10, stale=100_000)
    line = ClaimLine(queue.round)
    assert await line.submit(10) == []
    assert sum(queue.rounds) <= 10 * 4 + 50 + CLAIM_ROUND


async def test_a_failed_round_hands_out_what_was_claimed_and_fails_the_rest() -> None:
    calls = 0

    async def failing(n: int) -> tuple[list[Doc], int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return [{"_id": "a"}], 1
        raise ConnectionError("broker lost")

    line = ClaimLine(failing)
    first = asyncio.ensure_future(line.submit(5))  # alone: waits for more after "a"
    await asyncio.sleep(0)
    with pytest.raises(ConnectionError):
        await line.submit(5)
    assert await first == [{"_id": "a"}]
    # the line serves again after a failure
    assert await ClaimLine(Queue(3).round).submit(5) == [{"_id": "0"}, {"_id": "1"}, {"_id": "2"}]


async def test_a_claim_whose_client_left_gets_no_more_streams() -> None:
    queue = Queue(1000, seconds=0.02)
    line = ClaimLine(queue.round)
    gone = asyncio.ensure_future(line.submit(500))
    await asyncio.sleep(0.03)  # its first round is in flight
    gone.cancel()
    assert len(await line.submit(10)) == 10
    assert len(queue.rounds) <= 3
