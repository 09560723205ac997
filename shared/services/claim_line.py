"""The line of unfiltered claims: served in arrival order, each answered when it has streams.

Agents poll the queue every ``request_stream_period`` (FaceStream's setting), so a fleet
restarted at once sends its claims together and, if they are answered together, sends the
next ones together a period later: the service then claims only for the short while it may
keep a claim waiting, once a period, and a cold start's thousand streams take many
periods to hand out. So claims are not answered as one batch. One task claims in rounds
(at most :data:`CLAIM_ROUND` tokens: one read, one bulk write, one insert of rows) for the
claims in line, oldest first, each up to its limit, and answers a claim as soon as a round
gave it streams and others wait (or it has its limit, or the queue is empty). Answers, and
so the agents' next claims, spread over the period, and the rounds follow one another
while claims wait: a cold start is handed out at the database's pace.

No claim waits long while others wait: before a round, a claim that would have waited more than
:data:`ANSWER_BY` when the round ends (judged by the last round's pace) is answered with
what it has, possibly nothing, and rounds shrink when the database is slow (towards
:data:`ROUND_TIME` each, :data:`MIN_ROUND` tokens at least). A claimed
stream is always handed to a claim: streams claimed for a request whose client has gone
are that agent's to lose, and the handler-lost rule takes them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.core.types import Doc

#: tokens one round takes at most (one read, one bulk write, one insert)
CLAIM_ROUND = 50
#: the fewest tokens a round takes, however slow the database
MIN_ROUND = 10
#: how long a round should take (seconds): a database slowed by other work (a cold start's
#: first reports) gets smaller rounds, so that no claim waits long behind one
ROUND_TIME = 0.15
#: how long a claim may wait for its answer while others are served (seconds); a round in
#: flight ends first
ANSWER_BY = 0.35


def stale_budget(wanted: int) -> int:
    """How many tokens in a row that claim nothing (stale) a claim of ``wanted`` streams
    examines before it answers with what it has: a queue full of stale tokens cannot keep
    claims busy for long."""
    return wanted * 4 + 50


#: one round: claim up to ``n`` streams; (the claimed streams, the tokens taken), where no
#: token taken means the queue has none for now
Round = Callable[[int], Awaitable[tuple[list[Doc], int]]]


@dataclass(slots=True)
class _Claim:
    limit: int
    since: float
    future: asyncio.Future[list[Doc]]
    got: list[Doc] = field(default_factory=list)

    @property
    def wants(self) -> int:
        return self.limit - len(self.got)


class ClaimLine:
    def __init__(self, claim_round: Round, answer_by: float = ANSWER_BY) -> None:
        self._round = claim_round
        self.answer_by = answer_by
        self._line: list[_Claim] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, limit: int) -> list[Doc]:
        future: asyncio.Future[list[Doc]] = asyncio.get_running_loop().create_future()
        self._line.append(_Claim(limit, time.monotonic(), future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve())
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for claim in self._line:
            claim.future.cancel()
        self._line.clear()

    def _answer(self, claim: _Claim) -> None:
        self._line.remove(claim)
        if not claim.future.done():
            claim.future.set_result(claim.got)

    async def _serve(self) -> None:
        # let the claims that arrived with the first one (ready in this turn of the event
        # loop) join the line before the first round
        await asyncio.sleep(0)
        per_token = 0.0  # seconds, as the last round took them
        size = CLAIM_ROUND
        examined = 0
        try:
            while self._line:
                self._drop_gone()
                # while others wait: a round short enough to end before the oldest claim's
                # time is up (a claim alone is served until its limit, as before the line)
                now = time.monotonic()
                count = size
                if len(self._line) > 1 and per_token:
                    left = self._line[0].since + self.answer_by - now
                    count = max(1, min(size, int(left / per_token)))
                    self._answer_late(now + per_token * count)
                if not self._line:
                    break
                wanted = sum(claim.wants for claim in self._line)
                started = time.monotonic()
                claimed, taken = await self._round(min(count, wanted))
                if taken >= MIN_ROUND:  # smaller rounds say more about their overhead
                    per_token = (time.monotonic() - started) / taken
                    size = max(MIN_ROUND, min(CLAIM_ROUND, int(ROUND_TIME / per_token)))
                examined = 0 if claimed else examined + taken
                self._hand_out(claimed)
                if not taken or examined > stale_budget(wanted):
                    for claim in list(self._line):  # nothing (more) to claim for now
                        self._answer(claim)
        except Exception as exc:
            # every claim gets its streams, or the error when it has none (its client
            # answers it: nothing was claimed for it); the next claim starts a new task
            self._fail(exc)
        except BaseException:
            self._fail(None)
            raise

    def _fail(self, exc: Exception | None) -> None:
        for claim in self._line:
            if claim.future.done():
                continue
            if claim.got:
                claim.future.set_result(claim.got)
            elif exc is not None:
                claim.future.set_exception(exc)
            else:
                claim.future.cancel()
        self._line.clear()

    def _drop_gone(self) -> None:
        """Claims whose client has gone leave the line (nothing more is claimed for them)."""
        self._line = [c for c in self._line if not c.future.done()]

    def _answer_late(self, round_ends: float) -> None:
        """Answer the claims that would have waited too long by the end of a round."""
        for claim in list(self._line):
            if round_ends - claim.since > self.answer_by:
                self._answer(claim)

    def _hand_out(self, claimed: list[Doc]) -> None:
        """The round's streams to the claims in line, oldest first, each up to its limit;
        answered: the claims that got streams, unless one is alone and may wait for more."""
        stock = iter(claimed)
        served: list[_Claim] = []
        for claim in self._line:
            while claim.wants > 0 and (doc := next(stock, None)) is not None:
                claim.got.append(doc)
            if claim.got:
                served.append(claim)
            if claim.wants > 0:
                break
        leftover = list(stock)
        if leftover:  # cannot happen: a round asks for no more than the line wants
            raise RuntimeError(f"{len(leftover)} claimed streams have no claim")
        alone = len(self._line) == 1
        for claim in served:
            if claim.wants == 0 or not alone:
                self._answer(claim)
