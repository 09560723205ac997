"""The fleet at a glance: how many streams are in each status, and how long the oldest
pending stream has waited for an agent (metrics of the autorestart worker).

Read cheaply: not one count per status per scrape, but one census every
``LUNA_STREAMS_FLEET_CENSUS_INTERVAL`` seconds per autorestart worker, in two queries
served by the ``status_queued_at`` index: an aggregation that groups the index's keys by
status (covered: it reads no document), and the first pending stream in ``queued_at``
order (one key). A scrape reads the gauges the last census set; the oldest pending stream's
age is computed at the scrape from the time it was queued, so it grows between censuses.
Several autorestart workers report the same figures: dashboards take their ``max``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from prometheus_client import Gauge
from pymongo.errors import PyMongoError

from shared.core.clock import now_utc
from shared.core.errors import BackendUnavailable
from shared.domain.statuses import PENDING, STORED
from shared.store.mongo import Database

log = logging.getLogger("luna_streams.fleet")

#: the index that serves both queries (shared/store/mongo.py)
STATUS_INDEX = "status_queued_at"

STREAMS = Gauge("luna_streams_streams", "Streams by status (as of the last census)", ["status"])
CENSUS_TIME = Gauge(
    "luna_streams_fleet_census_timestamp_seconds", "When the last census of the streams ended"
)
for _status in STORED:
    STREAMS.labels(status=_status)

#: when the oldest pending stream was queued, as of the last census (Unix time; 0: none)
_oldest_queued = {"at": 0.0}


def _oldest_pending_age() -> float:
    queued = _oldest_queued["at"]
    return max(0.0, now_utc().timestamp() - queued) if queued else 0.0


OLDEST_PENDING_AGE = Gauge(
    "luna_streams_oldest_pending_age_seconds",
    "How long the oldest pending stream has waited for an agent (0: none pending)",
)
OLDEST_PENDING_AGE.set_function(_oldest_pending_age)


async def census(database: Database) -> tuple[dict[str, int], datetime | None]:
    """Streams by status, and when the oldest pending one was queued (None: none)."""
    counts = dict.fromkeys(STORED, 0)
    cursor = await database.streams.aggregate(
        [
            {"$match": {"status": {"$in": list(STORED)}}},
            {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        ],
        hint=STATUS_INDEX,
    )
    async for row in cursor:
        counts[str(row["_id"])] = int(row["count"])
    oldest = await database.streams.find_one(
        {"status": PENDING},
        {"queued_at": 1, "_id": 0},
        sort=[("queued_at", 1)],
        hint=STATUS_INDEX,
    )
    queued_at = oldest.get("queued_at") if oldest else None
    return counts, queued_at


async def take_census(database: Database) -> None:
    """One census, into the gauges."""
    counts, queued_at = await census(database)
    for status, count in counts.items():
        STREAMS.labels(status=status).set(count)
    _oldest_queued["at"] = queued_at.timestamp() if queued_at is not None else 0.0
    CENSUS_TIME.set(now_utc().timestamp())


async def census_forever(database: Database, every: float) -> None:
    """:func:`take_census` every ``every`` seconds; a failed one is logged, the next tried."""
    while True:
        try:
            await take_census(database)
        except (PyMongoError, BackendUnavailable) as exc:
            log.warning("stream census not taken: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every)
