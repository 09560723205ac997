"""Leases in MongoDB: a periodic job runs once per period, however many replicas run.

One document per job: ``{_id: job, last_run_at, owner}``. A replica starts a period with
one guarded upsert: it matches only when the last run is at least a period old; when
another replica already started this period, the upsert's insert hits the unique ``_id``
and fails. So exactly one replica wins each period, and when it dies another wins the
next one.

A replica does not ask every tick: after each attempt it knows when the next period can
start (:func:`next_start`: the last run plus the period), and asks again only then. So a
job costs its replicas about one write each per period, not one per tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from shared.core.clock import now_utc
from shared.store.mongo import Database


async def start_period(
    database: Database, job: str, period: float, owner: str, now: datetime | None = None
) -> bool:
    """Whether ``owner`` starts ``job``'s period now (``now``: the clock, injected by tests)."""
    now = now or now_utc()
    try:
        result = await database.leases.update_one(
            {"_id": job, "last_run_at": {"$lte": now - timedelta(seconds=period)}},
            {"$set": {"last_run_at": now, "owner": owner}, "$inc": {"runs": 1}},
            upsert=True,
        )
    except DuplicateKeyError:
        return False
    return bool(result.modified_count or result.upserted_id is not None)


async def next_start(
    database: Database, job: str, period: float, now: datetime | None = None
) -> datetime:
    """When ``job``'s next period can start: its last run plus ``period`` (``now`` when it
    never ran, or its lease is gone)."""
    lease = await database.leases.find_one({"_id": job}, {"last_run_at": 1})
    if lease is None or lease.get("last_run_at") is None:
        return now or now_utc()
    return lease["last_run_at"] + timedelta(seconds=period)  # type: ignore[no-any-return]
