"""The processing queue: peek at pending streams, and claim them for an agent.

Claims consume queue tokens from RabbitMQ (the all-streams queue, or the group queues when
the filter names groups) and decide in MongoDB. Set-based, not per token: each gateway
holds a small buffer of unacknowledged tokens per queue (:mod:`shared.messaging.token_buffer`); a
claim takes up to ``limit`` of them, reads their streams in one query, applies the
compare-and-sets (``pending`` at the token's version and ``queued_at`` -> ``in_progress``)
in one bulk write with their log rows in one insert (:mod:`shared.store.changes`), then
acknowledges the tokens. A stale token (stream deleted, paused, re-versioned, claimed
through another queue) fails its compare-and-set and is acknowledged; one claimable but
not by this claim's filters (another API version) stays in the buffer for other claims.
A gateway that dies leaves its unacknowledged tokens to the broker, which hands them to
another: no pending stream is lost, and none is claimed twice. Filters by stream id or name
claim directly in MongoDB with the same compare-and-set.

With ``LUNA_STREAMS_MAX_ACTIVE_STREAMS`` set, counting the room and claiming into it must
not interleave with another claim (two claims would both see the same free room): capped
claims hold a lock, in this process and in MongoDB (a lease document with an expiry, so a
gateway that dies holding it blocks the others for at most ``CAP_LOCK_TTL``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from shared.core.backoff import Backoff
from shared.core.clock import now_utc
from shared.core.errors import BrokerUnavailable
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.documents import V1_VISIBLE
from shared.domain.statuses import IN_PROGRESS, PENDING
from shared.domain.tokens import QueueToken
from shared.messaging.broker import Broker, broker_errors
from shared.messaging.token_buffer import TokenBuffers
from shared.services import claim_line
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database, find_by_ids
from shared.store.shown import with_reports

log = logging.getLogger("luna_streams.claims")

CAP_LOCK = "claims.max_active_streams"
CAP_LOCK_TTL = timedelta(seconds=30)
#: how long a capped claim waits for the lock before answering ``[]``
CAP_LOCK_WAIT = 5.0
#: a capped claim asks for the lock again after 10-20 ms, less often while it stays held
CAP_LOCK_BACKOFF = Backoff(first=0.02, cap=0.2)


@dataclass(frozen=True, slots=True)
class QueueFilters:
    """AND across kinds, OR within a list; None does not filter."""

    stream_ids: list[str] | None = None
    names: list[str] | None = None
    group_ids: list[str] | None = None
    group_names: list[str] | None = None
    #: the API version the claim comes through: v1 takes only streams v1 can show
    api_version: int = 1

    @property
    def direct(self) -> bool:
        """Filters the broker cannot serve: claim straight from MongoDB."""
        return self.stream_ids is not None or self.names is not None

    @property
    def by_group(self) -> bool:
        return self.group_ids is not None or self.group_names is not None

    def admits(self, doc: Doc) -> bool:
        """The in-memory form of :meth:`ClaimService._match` (besides the status)."""
        return (
            (self.stream_ids is None or doc["_id"] in self.stream_ids)
            and (self.names is None or doc.get("name") in self.names)
            and (self.group_ids is None or bool(set(self.group_ids) & set(doc.get("groups", []))))
            and (
                self.group_names is None
                or bool(set(self.group_names) & set(doc.get("group_names", [])))
            )
            and (self.api_version != 1 or doc.get("v1_compatible") is not False)
        )


class ClaimService:
    def __init__(
        self,
        database: Database,
        broker: Broker,
        changes: StreamChanges,
        max_active_streams: int = 0,
        *,
        prefetch: int = 100,
        hold: float = 1.0,
    ) -> None:
        self.database = database
        self.broker = broker
        self.changes = changes
        self.max_active_streams = max_active_streams
        self.buffers = TokenBuffers(broker, prefetch=prefetch, hold=hold)
        #: unfiltered claims, per API version: in line, each answered when it has streams
        self._unfiltered = {
            version: claim_line.ClaimLine(self._unfiltered_round(version)) for version in (1, 2)
        }
        self._cap_guard = asyncio.Lock()
        self._owner = uuid.uuid4().hex

    async def close(self) -> None:
        """Give every buffered token back to the broker."""
        for line in self._unfiltered.values():
            await line.close()
        await self.buffers.close()

    def _unfiltered_round(self, version: int) -> claim_line.Round:
        filters = QueueFilters(api_version=version)

        async def claim_round(count: int) -> tuple[list[Doc], int]:
            return await self._round(self.broker.names.streams, filters, count)

        return claim_round

    async def _round(self, queue: str, filters: QueueFilters, count: int) -> tuple[list[Doc], int]:
        """One round on a token queue: (the streams claimed, the tokens taken); no token
        taken means the queue has none for us now."""
        buffer = await self.buffers.get(queue)
        messages = await buffer.take(min(count, claim_line.CLAIM_ROUND))
        if not messages:
            return [], 0
        return await self._claim_tokens(buffer.give_back, messages, filters), len(messages)

    async def _queue_group_ids(self, filters: QueueFilters) -> list[str]:
        """The group queues a group-filtered claim consumes."""
        if filters.group_ids is not None:
            return list(dict.fromkeys(filters.group_ids))
        cursor = self.database.groups.find(
            {"group_name": {"$in": filters.group_names or []}}, {"_id": 1}
        )
        return sorted({doc["_id"] async for doc in cursor})

    @staticmethod
    def _match(filters: QueueFilters) -> Doc:
        query: Doc = {"status": PENDING}
        if filters.stream_ids is not None:
            query["_id"] = {"$in": filters.stream_ids}
        if filters.names is not None:
            query["name"] = {"$in": filters.names}
        if filters.group_ids is not None:
            query["groups"] = {"$in": filters.group_ids}
        if filters.group_names is not None:
            query["group_names"] = {"$in": filters.group_names}
        if filters.api_version == 1:
            query.update(V1_VISIBLE)
        return query

    async def peek(self, filters: QueueFilters, limit: int) -> list[Doc]:
        """Pending streams matching ``filters`` in queue order; changes nothing."""
        cursor = (
            self.database.streams.find(self._match(filters), {"outbox": 0})
            .sort([("queued_at", 1), ("_id", 1)])
            .limit(limit)
        )
        return await with_reports(self.database, await cursor.to_list())

    async def _room(self, limit: int) -> int:
        """How many more streams may start (``LUNA_STREAMS_MAX_ACTIVE_STREAMS``, 0 = no cap)."""
        if not self.max_active_streams:
            return limit
        active = await self.database.streams.count_documents({"status": IN_PROGRESS})
        return max(0, min(limit, self.max_active_streams - active))

    async def claim(self, filters: QueueFilters, limit: int) -> list[Doc]:
        """Claim up to ``limit`` pending streams; fewer (or none) is a normal answer."""
        if not self.max_active_streams:
            return await self._claim(filters, limit)
        async with self._cap_guard:  # one capped claim at a time in this process...
            if not await self._lock_cap():  # ...and in every gateway
                return []
            try:
                return await self._claim(filters, limit)
            finally:
                await self.database.leases.update_one(
                    {"_id": CAP_LOCK, "owner": self._owner}, {"$set": {"owner": None}}
                )

    async def _lock_cap(self) -> bool:
        deadline = time.monotonic() + CAP_LOCK_WAIT
        tries = 0
        while True:
            now = now_utc()
            try:
                result = await self.database.leases.update_one(
                    {"_id": CAP_LOCK, "$or": [{"owner": None}, {"expires_at": {"$lt": now}}]},
                    {"$set": {"owner": self._owner, "expires_at": now + CAP_LOCK_TTL}},
                    upsert=True,
                )
                if result.modified_count or result.upserted_id is not None:
                    return True
            except DuplicateKeyError:  # held by another gateway
                pass
            if time.monotonic() >= deadline:
                return False
            tries += 1
            await asyncio.sleep(CAP_LOCK_BACKOFF.delay(tries))

    async def _claim(self, filters: QueueFilters, limit: int) -> list[Doc]:
        limit = await self._room(limit)
        if limit == 0:
            return []
        if filters.direct:
            return await self._claim_direct(filters, limit)
        if filters.by_group:
            return await self._claim_by_group(filters, limit)
        return await self._unfiltered[filters.api_version].submit(limit)

    async def _claim_direct(self, filters: QueueFilters, limit: int) -> list[Doc]:
        claimed: list[Doc] = []
        while len(claimed) < limit:
            candidates = (
                await self.database.streams.find(self._match(filters))
                .sort([("queued_at", 1), ("_id", 1)])
                .limit(limit - len(claimed))
                .to_list()
            )
            if not candidates:
                break
            claimed += await self._compare_and_set(candidates, filters)
        return claimed

    async def _claim_by_group(self, filters: QueueFilters, limit: int) -> list[Doc]:
        """Claim from the group queues the filters name, round after round."""
        claimed: list[Doc] = []
        # stale tokens are skipped, but one claim examines a bounded number of them, so
        # that a queue full of stale tokens cannot keep one request busy for long
        budget = claim_line.stale_budget(limit)
        live = [self.broker.names.group(gid) for gid in await self._queue_group_ids(filters)]
        while len(claimed) < limit and live and budget > 0:
            for name in list(live):
                try:
                    got, taken = await self._round(name, filters, limit - len(claimed))
                except BrokerUnavailable:
                    if not claimed:
                        raise
                    # the streams claimed so far are this agent's: answer with them
                    log.warning("broker lost mid-claim; answering with %d", len(claimed))
                    return claimed
                if not taken:
                    live.remove(name)
                    continue
                budget -= taken
                claimed += got
                if len(claimed) >= limit:
                    break
        return claimed

    async def _claim_tokens(
        self,
        give_back: Callable[[list[AbstractIncomingMessage]], None],
        messages: list[AbstractIncomingMessage],
        filters: QueueFilters,
    ) -> list[Doc]:
        """Claim the streams of taken tokens: one read, one bulk write, then the acks."""
        tokens: list[tuple[QueueToken, AbstractIncomingMessage]] = []
        done: list[AbstractIncomingMessage] = []  # stale, duplicate or malformed
        for message in messages:
            try:
                tokens.append((QueueToken.decode(message.body), message))
            except ValidationError:
                log.warning("dropping a malformed queue token")
                with broker_errors():
                    await message.reject(requeue=False)
        ids = list(dict.fromkeys(token.stream_id for token, _ in tokens))
        docs = {doc["_id"]: doc for doc in await find_by_ids(self.database.streams, ids)}
        candidates: list[Doc] = []
        claiming: list[AbstractIncomingMessage] = []
        passed: list[AbstractIncomingMessage] = []  # claimable, but not by these filters
        for token, message in tokens:
            doc = docs.get(token.stream_id)
            if doc is None or not token.waited_by(doc):
                done.append(message)  # stale (or a duplicate of one taken just before)
            elif not filters.admits(doc):
                passed.append(message)
            else:
                candidates.append(docs.pop(token.stream_id))
                claiming.append(message)
        claimed = await self._compare_and_set(candidates, filters) if candidates else []
        # acknowledged after the claims and their rows are written: a token whose claim
        # failed is stale (another queue's token, a patch, a delete won)
        done += claiming
        for message in done:
            try:
                with broker_errors():
                    await message.ack()
            except BrokerUnavailable as exc:  # channel lost: the token comes back, then stale
                log.info("token ack lost (%s); it will be redelivered as stale", exc)
        give_back(passed)
        return claimed

    async def _compare_and_set(self, docs: list[Doc], filters: QueueFilters) -> list[Doc]:
        """pending -> in_progress for each stream (:func:`shared.domain.transitions.claim`),
        within the filters (a stream detached from the group since its token was queued
        stays); the streams that were claimed, in the order given."""
        now = now_utc()
        scope = self._match(filters)
        changes = [Change(doc, transitions.claim(doc, now), now, scope=scope) for doc in docs]
        # each claim's row is new: its insert journals the claims (one flush)
        landed = await self.changes.apply(changes, fresh_rows=True)
        for change in landed:
            change.stream.update(change.set)
        return [change.stream for change in landed]
