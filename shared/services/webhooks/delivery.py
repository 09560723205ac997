"""Sending deliveries: each attempt signed, bounded in time, retried with backoff, at
least once.

A delivery document is the only truth about a delivery (as ``autorestart.due_at`` is for a
restart): ``state`` (``pending``, ``delivering``, ``delivered``, ``failed``), ``attempts``
and ``due_at``, when it is due (a pending one: its next attempt; one being delivered: the
end of its lease). Each period of the webhooks job, :meth:`DeliveryPool.run` claims the
due ones with a guarded update (state, due time and attempts as read: two runs cannot
claim one twice), leases each for ``LUNA_STREAMS_WEBHOOK_TIMEOUT`` plus
:data:`LEASE_MARGIN`, and starts its attempt in the pool without waiting for it: an
attempt runs as a task on the worker's event loop, so a receiver that never answers holds
one place in the pool until its timeout, never a dramatiq worker thread or anyone else's
delivery. A worker killed mid-attempt leaves the lease to run out: the delivery is due
again and another run claims it. Parameters:

- ``LUNA_STREAMS_WEBHOOK_CONCURRENCY``: attempts in flight in one worker at most;
  :data:`PER_WEBHOOK` of them to one webhook at most (a slow receiver waits its turn,
  the others do not);
- ``LUNA_STREAMS_WEBHOOK_TIMEOUT``: an attempt's bound, from connecting to the answer;
- ``LUNA_STREAMS_WEBHOOK_RETRY_DELAY``: the wait after the first failed attempt, doubled
  after each further one (at most :data:`MAX_DELAY`, with 20 % jitter);
- ``LUNA_STREAMS_WEBHOOK_MAX_ATTEMPTS``: attempts before a delivery is ``failed``, its
  last status code and error kept.

An attempt is a POST of the delivery's body, signed (:mod:`shared.services.webhooks.signing`), with
no redirect followed, no proxy taken from the environment, to an address the URL policy
allows (checked again now: :class:`~shared.services.webhooks.policy.PolicyResolver`). A 2xx answer
delivers it; anything else (another status, no answer in time, no connection) is a failed
attempt. Finished deliveries are kept :data:`RETENTION` (a TTL index).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Final

import aiohttp
from pymongo import UpdateOne

from shared.core.backoff import Backoff
from shared.core.clock import now_utc
from shared.core.errors import WebhookUrlRefused
from shared.core.settings import AutorestartWorkerSettings
from shared.core.types import Doc
from shared.services.webhooks.policy import PolicyResolver, WebhookUrlPolicy
from shared.services.webhooks.signing import HEADER, sign
from shared.store.mongo import Database, find_by_ids

log = logging.getLogger("luna_streams.webhooks")

PENDING: Final = "pending"
DELIVERING: Final = "delivering"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"

PER_WEBHOOK: Final = 4
LEASE_MARGIN: Final = timedelta(seconds=5)
MAX_DELAY: Final = 3600.0
RETENTION: Final = timedelta(days=7)
#: due deliveries read per query, and queries per run at most
CLAIM_PAGE: Final = 200
CLAIM_PAGES: Final = 3
#: characters of an error kept
ERROR_CHARS: Final = 200
USER_AGENT: Final = "luna-streams-webhooks"


def retry_delay(attempts: int, first: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return Backoff(first=first, cap=MAX_DELAY, jitter=(0.8, 1.2)).delay(attempts)


def attempt_outcome(status: int | None, error: str | None) -> str | None:
    """Why an attempt failed, or None when it delivered."""
    if error is not None:
        return error[:ERROR_CHARS]
    if status is not None and 200 <= status < 300:
        return None
    return f"answered HTTP {status}"


class DeliveryPool:
    """The attempts in flight in one worker, on the event loop of its actors."""

    def __init__(self, settings: AutorestartWorkerSettings) -> None:
        self.settings = settings
        self.policy = WebhookUrlPolicy(tuple(settings.webhook_allowed_networks))
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_webhook: Counter[str] = Counter()
        self._closing = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.settings.webhook_concurrency,
                    limit_per_host=PER_WEBHOOK,
                    resolver=PolicyResolver(self.policy),
                ),
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def run(self, database: Database) -> int:
        """Claim the due deliveries there is room for and start them; how many."""
        room = self.settings.webhook_concurrency - len(self._tasks)
        if self._closing or room <= 0:
            return 0
        now = now_utc()
        picked = await self._due(database, now, room)
        if not picked:
            return 0
        claimed = await self._claim(database, picked, now)
        hooks = {
            hook["_id"]: hook
            for hook in await find_by_ids(
                database.webhooks, list({d["webhook_id"] for d in claimed})
            )
        }
        for doc in claimed:
            hook = hooks.get(doc["webhook_id"])
            if hook is None:  # removed since: its deliveries go with it
                await database.webhook_deliveries.delete_one({"_id": doc["_id"]})
                continue
            self._per_webhook[hook["_id"]] += 1
            task = asyncio.create_task(self._attempt(database, doc, hook))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _due(self, database: Database, now: datetime, room: int) -> list[Doc]:
        """Due deliveries, oldest first, at most :data:`PER_WEBHOOK` in flight a webhook."""
        counts = Counter(self._per_webhook)
        picked: list[Doc] = []
        for _ in range(CLAIM_PAGES):
            full = [hook for hook, n in counts.items() if n >= PER_WEBHOOK]
            page = (
                await database.webhook_deliveries.find(
                    {
                        "state": {"$in": [PENDING, DELIVERING]},
                        "due_at": {"$lte": now},
                        "webhook_id": {"$nin": full},
                        "_id": {"$nin": [d["_id"] for d in picked]},
                    },
                    {"state": 1, "due_at": 1, "attempts": 1, "webhook_id": 1},
                )
                .sort("due_at", 1)
                .limit(CLAIM_PAGE)
                .to_list()
            )
            for doc in page:
                if counts[doc["webhook_id"]] < PER_WEBHOOK and len(picked) < room:
                    counts[doc["webhook_id"]] += 1
                    picked.append(doc)
            if len(page) < CLAIM_PAGE or len(picked) >= room:
                break
        return picked

    async def _claim(self, database: Database, picked: list[Doc], now: datetime) -> list[Doc]:
        """Lease ``picked`` (those still as read); the leased documents."""
        stamp = uuid.uuid4().hex
        lease_end = now + timedelta(seconds=self.settings.webhook_timeout) + LEASE_MARGIN
        await database.webhook_deliveries.bulk_write(
            [
                UpdateOne(
                    {
                        "_id": doc["_id"],
                        "state": doc["state"],
                        "due_at": doc["due_at"],
                        "attempts": doc["attempts"],
                    },
                    {
                        "$set": {
                            "state": DELIVERING,
                            "due_at": lease_end,
                            "claim": stamp,
                            "last_attempt_time": now,
                        },
                        "$inc": {"attempts": 1},
                    },
                )
                for doc in picked
            ],
            ordered=False,
        )
        return await database.webhook_deliveries.find(
            {"_id": {"$in": [doc["_id"] for doc in picked]}, "claim": stamp}
        ).to_list()

    async def _attempt(self, database: Database, doc: Doc, hook: Doc) -> None:
        status: int | None = None
        error: str | None = None
        try:
            url = self.policy.parse(hook["url"])
            body = doc["body"].encode("utf-8")
            headers = {
                "Content-Type": "application/json",
                HEADER: sign(hook["secret"], body, int(time.time())),
                "X-Luna-Streams-Event": doc["event"],
                "X-Luna-Streams-Delivery": doc["_id"],
            }
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                status = answer.status
        except WebhookUrlRefused as refused:
            error = f"refused: {refused}"
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._per_webhook[hook["_id"]] -= 1
            if self._per_webhook[hook["_id"]] <= 0:
                del self._per_webhook[hook["_id"]]
        try:
            await self._record(database, doc, status, attempt_outcome(status, error))
        except Exception:  # the lease runs out and the delivery is attempted again
            log.exception("webhook delivery %s not recorded", doc["_id"])

    async def _record(
        self, database: Database, doc: Doc, status: int | None, error: str | None
    ) -> None:
        now = now_utc()
        fields: Doc = {"status_code": status, "error": error, "claim": None}
        if error is None:
            fields |= {"state": DELIVERED, "delivered_time": now, "due_at": None}
        elif doc["attempts"] >= self.settings.webhook_max_attempts:
            fields |= {"state": FAILED, "due_at": None}
            log.warning(
                "webhook %s: delivery %s failed after %d attempts: %s",
                doc["webhook_id"],
                doc["_id"],
                doc["attempts"],
                error,
            )
        else:
            delay = retry_delay(doc["attempts"], self.settings.webhook_retry_delay)
            fields |= {"state": PENDING, "due_at": now + timedelta(seconds=delay)}
        if fields["state"] != PENDING:
            fields["expire_at"] = now + RETENTION
        await database.webhook_deliveries.update_one(
            {"_id": doc["_id"], "claim": doc["claim"]}, {"$set": fields}
        )

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound
        """Start nothing more; let the attempts in flight end within ``timeout`` (those
        that do not are attempted again once their lease runs out); close the client."""
        self._closing = True
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
        if self._session is not None:
            await self._session.close()
            self._session = None
