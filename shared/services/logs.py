"""Stream logs: the query of ``GET /streams/logs``, its listing, and the pruning of old rows.

Rows are written with their changes (:mod:`shared.store.changes`); this module only reads and
deletes them. :meth:`StreamLogService.delete_older_than` serves both ``DELETE
/streams/logs`` and the periodic log janitor, and never removes a stream's newest row.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import Field
from pymongo.asynchronous.collection import AsyncCollection

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain.documents import format_time
from shared.domain.filters import LIST_FILTER_NOTE, AccountQuery, Page, QueryUUID, bounds
from shared.domain.models.common import QueryTime
from shared.domain.statuses import LoggedStatus
from shared.store.mongo import Database

Target = Literal["stream_id", "log_time", "error", "status", "video_info", "version", "preview"]
#: every field of a log view, in the order the API shows them
TARGETS: tuple[Target, ...] = get_args(Target)

#: streams handled per round of :meth:`StreamLogService.delete_older_than`
DELETE_BATCH = 1000

NEWEST_FIRST: list[tuple[str, int]] = [("log_time", -1), ("_id", -1)]


class LogFilters(AccountQuery):
    stream_ids: list[QueryUUID] | None = Field(
        default=None,
        description="Only logs of the streams with these ids." + LIST_FILTER_NOTE,
    )
    statuses: list[LoggedStatus] | None = Field(
        default=None,
        description="Only logs with these statuses: the reference's `stream_status`, as on "
        "stream lists (the transient `restart` and `handler_lost` and the virtual "
        "`deleted` appear only here).",
    )
    log_time__gte: QueryTime | None = Field(
        default=None, description="Logged at or after this time (RFC 3339)."
    )
    log_time__lt: QueryTime | None = Field(
        default=None, description="Logged before this time (RFC 3339)."
    )

    def mongo_filter(self) -> Doc:
        query: Doc = {}
        if self.account_id is not None:
            query["account_id"] = self.account_id
        if self.stream_ids is not None:
            query["stream_id"] = {"$in": list(dict.fromkeys(self.stream_ids))}
        if self.statuses is not None:
            query["status"] = {"$in": list(dict.fromkeys(self.statuses))}
        logged = bounds(self.log_time__gte, self.log_time__lt)
        if logged:
            query["log_time"] = logged
        return query


class LogsQuery(LogFilters, Page):
    targets: list[Target] = Field(
        default=list(TARGETS),
        min_length=1,
        description="Fields of each log to return (default: all).",
    )

    def fields(self) -> list[Target]:
        """The requested fields, once each, in the API's order."""
        return [name for name in TARGETS if name in self.targets]


class DeleteLogsQuery(AccountQuery):
    """An extension of the reference API: with ``account_id``, only that account's rows."""

    log_time__lt: QueryTime | None = Field(
        default=None,
        description="Delete logs written before this time (RFC 3339); absent: before now. "
        "Each stream keeps its newest log either way.",
    )

    def bound(self) -> datetime:
        return self.log_time__lt if self.log_time__lt is not None else now_utc()


def log_view(row: Doc, fields: list[Target]) -> dict[str, Any]:
    view: dict[str, Any] = {name: row.get(name) for name in fields}
    if "log_time" in view:
        view["log_time"] = format_time(row["log_time"])
    return view


class StreamLogService:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def list(self, query: LogsQuery) -> list[dict[str, Any]]:
        """One page of logs, newest first, each with only the requested fields."""
        fields = query.fields()
        projection: Doc = {name: 1 for name in fields}
        cursor = (
            self.database.stream_logs.find(query.mongo_filter(), projection)
            .sort(NEWEST_FIRST)
            .skip(query.skip)
            .limit(query.page_size)
        )
        return [log_view(row, fields) async for row in cursor]

    async def delete_older_than(self, bound: datetime, account_id: str | None = None) -> int:
        """Delete the rows logged before ``bound``, except each stream's newest row.

        Works through the streams that have such rows, :data:`DELETE_BATCH` at a time. The
        bound is clamped to the start of the call, so a row written meanwhile is never
        touched. Idempotent: a second call with the same bound deletes nothing. With
        ``account_id``, only the rows of that account's streams.
        """
        bound = min(bound, now_utc())
        deleted = 0
        logs = self.database.stream_logs
        scope: Doc = {} if account_id is None else {"account_id": account_id}
        async with aclosing(_streams_logged_before(logs, bound, scope)) as batches:
            async for stream_ids in batches:
                keep = await _newest_rows_before(logs, stream_ids, bound)
                result = await logs.delete_many(
                    {
                        **scope,
                        "stream_id": {"$in": stream_ids},
                        "log_time": {"$lt": bound},
                        "_id": {"$nin": keep},
                    }
                )
                deleted += result.deleted_count
        return deleted


async def _streams_logged_before(
    logs: AsyncCollection[Doc], bound: datetime, scope: Doc
) -> AsyncGenerator[list[str], None]:
    """Ids of the streams with rows older than ``bound`` (within ``scope``), in batches."""
    pipeline: list[Doc] = [
        {"$match": {**scope, "log_time": {"$lt": bound}}},
        {"$group": {"_id": "$stream_id"}},
    ]
    batch: list[str] = []
    async with await logs.aggregate(pipeline) as cursor:
        async for doc in cursor:
            batch.append(doc["_id"])
            if len(batch) == DELETE_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


async def _newest_rows_before(
    logs: AsyncCollection[Doc], stream_ids: list[str], bound: datetime
) -> list[Any]:
    """Ids of the newest rows that are older than ``bound`` (one per stream at most).

    First each stream's newest log time (one index seek per stream: ``$sort`` +
    ``$first`` on the ``stream_log_time`` index), then, for the streams whose newest
    row is old, the rows at that time: the rows of one change share their log time,
    and the newest is the one :meth:`StreamLogService.list` shows first (greatest ``_id``).
    """
    pipeline: list[Doc] = [
        {"$match": {"stream_id": {"$in": stream_ids}}},
        {"$sort": {"stream_id": 1, "log_time": -1}},
        {"$group": {"_id": "$stream_id", "log_time": {"$first": "$log_time"}}},
    ]
    async with await logs.aggregate(pipeline) as cursor:
        stale = [
            {"stream_id": doc["_id"], "log_time": doc["log_time"]}
            async for doc in cursor
            if doc["log_time"] < bound
        ]
    if not stale:
        return []
    newest: dict[str, Any] = {}
    async with logs.find({"$or": stale}, {"stream_id": 1}) as rows:
        async for row in rows:
            current = newest.get(row["stream_id"])
            if current is None or row["_id"] > current:
                newest[row["stream_id"]] = row["_id"]
    return list(newest.values())
