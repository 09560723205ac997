"""The audit trail: who changed what, and when (authentication on).

One row per request that changed something (a method other than GET/HEAD answered with a
2xx), written before the answer leaves the gateway: the principal (token id and name, role,
how it proved itself), the client address, the request id, the operation (method and route)
and its target (the ids in the path), the account it named, the status. Claims and feedback
are not here: every status change they make is in the stream's own log.

Rows of requests answered together are written together (one insert, journaled once, as
:mod:`shared.core.coalesce` does for creates): a change's answer still waits for its row, but
auditing costs a busy gateway one write per batch, not one per request.

Rows go away after ``LUNA_STREAMS_AUDIT_RETENTION_DAYS`` (each carries its ``expire_at``; a
TTL index removes it), as stream logs go after ``LUNA_STREAMS_LOGS_CLEAR_INTERVAL``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING

from shared.core import clock
from shared.core.coalesce import Coalescer
from shared.core.types import Doc
from shared.domain.documents import format_time
from shared.domain.filters import bounds
from shared.domain.roles import Principal
from shared.store.mongo import Database


@dataclass(frozen=True, slots=True)
class AuditQuery:
    account_id: str | None = None
    token_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    skip: int = 0
    limit: int = 100


class AuditTrail:
    def __init__(self, database: Database, retention_days: float) -> None:
        self.database = database
        self.retention = timedelta(days=retention_days)
        self._rows: Coalescer[Doc, None] = Coalescer(self._insert)

    async def _insert(self, rows: list[Doc]) -> list[None]:
        await self.database.audit.insert_many(rows, ordered=False)
        return [None] * len(rows)

    async def close(self) -> None:
        await self._rows.close()

    async def record(
        self,
        principal: Principal,
        *,
        address: str | None,
        request_id: str | None,
        method: str,
        route: str,
        target: dict[str, str],
        account_id: str | None,
        status: int,
    ) -> None:
        now = clock.now_utc()
        await self._rows.submit(
            {
                "_id": str(uuid.uuid4()),
                "time": now,
                "expire_at": now + self.retention,
                "token_id": principal.token_id,
                "token_name": principal.name,
                "role": principal.role.value,
                "via": principal.via,
                "address": address,
                "request_id": request_id,
                "method": method,
                "route": route,
                "target": target,
                "account_id": account_id,
                "status": status,
            }
        )

    async def find(self, query: AuditQuery) -> list[Doc]:
        """The rows that match, newest first, one page of them."""
        match: dict[str, Any] = {}
        if query.account_id is not None:
            match["account_id"] = query.account_id
        if query.token_id is not None:
            match["token_id"] = query.token_id
        window = bounds(query.since, query.until)
        if window:
            match["time"] = window
        cursor = (
            self.database.audit.find(match, {"expire_at": 0})
            .sort([("time", DESCENDING), ("_id", DESCENDING)])
            .skip(query.skip)
            .limit(query.limit)
        )
        return await cursor.to_list()


def audit_view(doc: Doc) -> Doc:
    """An audit row as the API shows it."""
    return {
        "audit_id": doc["_id"],
        "time": format_time(doc["time"]),
        "token_id": doc.get("token_id"),
        "token_name": doc.get("token_name"),
        "role": doc["role"],
        "via": doc["via"],
        "address": doc.get("address"),
        "request_id": doc.get("request_id"),
        "method": doc["method"],
        "route": doc["route"],
        "target": doc.get("target") or {},
        "account_id": doc.get("account_id"),
        "status": doc["status"],
    }
