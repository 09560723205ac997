"""The processing queue: peek at pending streams, and claim them for an agent.

Claims consume queue tokens from RabbitMQ (the all-streams queue, or the group queues when
the filter names groups) and apply each with one compare-and-set in MongoDB
(``pending`` at the token's version and ``queued_at`` -> ``in_progress``). The broker orders
and spreads the work; MongoDB decides: a stale token (stream deleted, paused, re-versioned,
claimed through another queue) fails its compare-and-set, is acknowledged and skipped.
A token is acknowledged only after its compare-and-set, so a gateway that dies mid-claim
leaves its unacknowledged tokens to be redelivered: no pending stream is lost, and none is
claimed twice. Filters by stream id or name claim directly in MongoDB with the same
compare-and-set.

With ``LUNA_STREAMS_MAX_ACTIVE_STREAMS`` set, counting the room and claiming into it must
not interleave with another claim (two claims would both see the same free room): capped
claims hold a lock, in this process and in MongoDB (a lease document with an expiry, so a
gateway that dies holding it blocks the others for at most ``CAP_LOCK_TTL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from shared.broker import Broker
from shared.mongo import Database, Doc
from shared.statuses import IN_PROGRESS, PENDING
from shared.streams.documents import V1_VISIBLE
from shared.streams.outbox import Outbox, entries_for, now_utc, push_entries
from shared.tokens import QueueToken

log = logging.getLogger("luna_streams.claims")

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    RuntimeError,  # aio-pika: "Channel closed" on a closed robust channel
)

CAP_LOCK = "claims.max_active_streams"
CAP_LOCK_TTL = timedelta(seconds=30)
#: how long a capped claim waits for the lock before answering ``[]``
CAP_LOCK_WAIT = 5.0


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


class ClaimService:
    def __init__(
        self, database: Database, broker: Broker, outbox: Outbox, max_active_streams: int = 0
    ) -> None:
        self.database = database
        self.broker = broker
        self.outbox = outbox
        self.max_active_streams = max_active_streams
        self._cap_guard = asyncio.Lock()
        self._owner = uuid.uuid4().hex

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
        return await cursor.to_list()

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
            await asyncio.sleep(0.02)

    async def _claim(self, filters: QueueFilters, limit: int) -> list[Doc]:
        limit = await self._room(limit)
        if limit == 0:
            return []
        if filters.direct:
            claimed = await self._claim_direct(filters, limit)
        else:
            claimed = await self._claim_from_broker(filters, limit)
        await self.outbox.flush_many((doc["_id"], doc.pop("_entries")) for doc in claimed)
        return claimed

    async def _claim_direct(self, filters: QueueFilters, limit: int) -> list[Doc]:
        claimed: list[Doc] = []
        while len(claimed) < limit:
            candidates = (
                await self.database.streams.find(self._match(filters), {"outbox": 0})
                .sort([("queued_at", 1), ("_id", 1)])
                .limit(limit - len(claimed))
                .to_list()
            )
            if not candidates:
                break
            for doc in candidates:
                if await self._compare_and_set(doc, filters):
                    claimed.append(doc)
        return claimed

    async def _claim_from_broker(self, filters: QueueFilters, limit: int) -> list[Doc]:
        names = (
            [self.broker.names.group(gid) for gid in await self._queue_group_ids(filters)]
            if filters.by_group
            else [self.broker.names.streams]
        )
        live = [await self.broker.declare_queue(name) for name in names]
        claimed: list[Doc] = []
        passed: list[AbstractIncomingMessage] = []  # claimable, but not by these filters
        # stale tokens are skipped, but one claim examines a bounded number of them, so
        # that a broker that redelivers the same token over and over cannot spin it
        budget = limit * 4 + 50
        try:
            while len(claimed) < limit and live and budget > 0:
                for queue in list(live):
                    budget -= 1
                    try:
                        doc = await self._take_one(queue, filters, passed)
                    except BROKER_ERRORS:
                        if not claimed:
                            raise
                        # the streams claimed so far are this agent's: answer with them
                        log.warning("broker lost mid-claim; answering with %d", len(claimed))
                        return claimed
                    if doc is False:
                        live.remove(queue)  # this queue is empty
                    elif isinstance(doc, dict):
                        claimed.append(doc)
                    if len(claimed) >= limit:
                        break
        finally:
            # held unacknowledged while this claim looked further; back for other agents
            for message in passed:
                with contextlib.suppress(*BROKER_ERRORS):
                    await message.nack(requeue=True)
        return claimed

    async def _take_one(
        self,
        queue: AbstractQueue,
        filters: QueueFilters,
        passed: list[AbstractIncomingMessage],
    ) -> Doc | bool | None:
        """Claim from one token: the stream, None for a stale token, False when empty."""
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            return False
        try:
            token = QueueToken.decode(message.body)
        except ValidationError:
            log.warning("dropping a malformed token from %s", queue.name)
            await message.reject(requeue=False)
            return None
        doc = await self.database.streams.find_one(token.cas_filter(), {"outbox": 0})
        claimed = doc is not None and await self._compare_and_set(doc, filters)
        if (
            doc is not None
            and not claimed
            and await self.database.streams.find_one(token.cas_filter(), {"_id": 1})
        ):
            # still pending at this token's version: claimable, but not by these filters
            # (another group filter, or a stream this API version cannot show); it goes
            # back to the queue for other agents once this claim is done
            passed.append(message)
            return None
        try:
            await message.ack()
        except Exception as exc:  # channel lost: the token comes back and is then stale
            log.info(
                "token ack for %s lost (%s); it will be redelivered as stale",
                token.stream_id,
                type(exc).__name__,
            )
        return doc if claimed else None

    async def _compare_and_set(self, doc: Doc, filters: QueueFilters) -> bool:
        """pending -> in_progress, guarded by the version and ``queued_at`` read and by the
        filters (a stream detached from the group since its token was queued stays)."""
        now = now_utc()
        entries = entries_for(
            doc,
            [IN_PROGRESS],
            doc["version"],
            now,
            groups=doc.get("groups", []),
            error=doc.get("last_error"),
            video_info=doc.get("video_info"),
            preview=doc.get("preview"),
        )
        guard: dict[str, Any] = {
            **self._match(filters),
            "_id": doc["_id"],
            "version": doc["version"],
            "queued_at": doc["queued_at"],
        }
        claim = {"claimed_at": now, "last_feedback_at": now, "feedback_ids": []}
        result = await self.database.streams.update_one(
            guard,
            {"$set": {"status": IN_PROGRESS, "claim": claim}, "$push": push_entries(entries)},
        )
        if not result.modified_count:
            return False
        doc.update(status=IN_PROGRESS, claim=claim, _entries=entries)
        return True
