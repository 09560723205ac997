"""The dispatch reconciler: a pending stream whose token may be missing gets a new one.

Tokens go missing when the broker loses a queue (deleted, purged, a node lost without
replication); a publish that failed after the MongoDB write is already retried by the
outbox. The reconciler compares each token queue's depth with the number of pending
streams it should hold; when the queue holds fewer, it publishes again the token of each
pending stream queued more than ``grace`` seconds ago and not re-published within
``grace`` (``token_checked_at``). Tokens are idempotent: a duplicate costs one stale
compare-and-set, never a double claim.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain.statuses import PENDING
from shared.domain.tokens import QueueToken, TokenPublisher
from shared.messaging.broker import Broker
from shared.store.mongo import Database

log = logging.getLogger("luna_streams.reconciler")

#: streams read (and marked checked) per round: never one cursor over every pending stream
RECONCILE_BATCH = 500


async def _depth(broker: Broker, name: str) -> int:
    ready, _ = await broker.queue_depth(name)
    return ready


async def reconcile_tokens(
    database: Database, broker: Broker, publisher: TokenPublisher, grace: float
) -> int:
    now = now_utc()
    stale = now - timedelta(seconds=grace)
    republished = 0
    pending = await database.streams.count_documents({"status": PENDING})
    if pending and await _depth(broker, broker.names.streams) < pending:
        republished += await _republish(database, publisher, {}, stale, None)
    group_ids = await database.streams.distinct("groups", {"status": PENDING})
    for group_id in group_ids:
        count = await database.streams.count_documents({"status": PENDING, "groups": group_id})
        if await _depth(broker, broker.names.group(group_id)) < count:
            republished += await _republish(
                database, publisher, {"groups": group_id}, stale, group_id
            )
    if republished:
        log.info("republished %d queue tokens", republished)
    return republished


async def _republish(
    database: Database,
    publisher: TokenPublisher,
    extra: Doc,
    stale: object,
    group_id: str | None,
) -> int:
    field = "token_checked_at" if group_id is None else f"token_checked_at_groups.{group_id}"
    query: Doc = {
        "status": PENDING,
        "queued_at": {"$lt": stale},
        "$or": [{field: None}, {field: {"$lt": stale}}],
        **extra,
    }
    count = 0
    while True:  # bounded batches: a republished stream leaves the query (checked now)
        docs = (
            await database.streams.find(query, {"version": 1, "queued_at": 1, "groups": 1})
            .sort("queued_at", 1)
            .limit(RECONCILE_BATCH)
            .to_list()
        )
        for doc in docs:
            token = QueueToken(
                stream_id=doc["_id"], version=doc["version"], queued_at=doc["queued_at"]
            )
            if group_id is None:
                await publisher.publish_token(token, [])
            else:
                await publisher.publish_token(token, [group_id], only_groups=True)
        if docs:
            await database.streams.update_many(
                {"_id": {"$in": [doc["_id"] for doc in docs]}}, {"$set": {field: now_utc()}}
            )
        count += len(docs)
        if len(docs) < RECONCILE_BATCH:
            return count
