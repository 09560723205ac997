"""Leases in MongoDB: a periodic job runs once per period, however many replicas run.

One document per job: ``{_id: job, last_run_at, owner}``. A replica starts a period with
one guarded upsert: it matches only when the last run is at least a period old; when
another replica already started this period, the upsert's insert hits the unique ``_id``
and fails. So exactly one replica wins each period, and when it dies another wins the
next one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from shared.clock import now_utc
from shared.mongo import Database


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
