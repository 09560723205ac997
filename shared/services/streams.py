"""Stream operations: create, read, list, count, patch, replace, delete.

Every state change is one :class:`~shared.store.changes.Change`, guarded by the status and
version it was computed from (:mod:`shared.store.changes` applies it with its log rows and
queue token). A lost race is retried from a fresh read. A delete removes the streams it
names first, chunk by chunk, then writes their ``deleted`` rows
(:meth:`StreamChanges.delete`): a stream removed is not found by any change any more.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.core.clock import now_utc
from shared.core.coalesce import Coalescer
from shared.core.errors import (
    ConcurrentModification,
    GroupNameNotFound,
    GroupNotFound,
    StreamNotFound,
)
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.documents import VIEW_PROJECTION, new_stream, settings_fields
from shared.domain.filters import StreamFiltersV2, StreamListQueryV2, one_in_account
from shared.store.changes import Change, StreamChanges
from shared.store.deletions import Deletion
from shared.store.mongo import Database
from shared.store.shown import with_report, with_reports

MAX_CAS_ATTEMPTS = 20


class StreamService:
    def __init__(self, database: Database, changes: StreamChanges) -> None:
        self.database = database
        self.changes = changes
        #: creates that arrive together are inserted together (group commit)
        self._creates: Coalescer[Doc, None] = Coalescer(self._insert)

    async def _insert(self, batch: list[Doc]) -> list[None]:
        await self.changes.create(batch)
        return [None] * len(batch)

    async def _group_of(
        self, account_id: str, group_name: str | None, group_id: str | None = None
    ) -> list[tuple[str, str]]:
        """``(group_id, group_name)`` of the account's groups named by name and/or id."""
        found: list[tuple[str, str]] = []
        if group_name is not None:
            group = await self.database.groups.find_one(
                {"account_id": account_id, "group_name": group_name}, {"_id": 1}
            )
            if group is None:
                raise GroupNameNotFound(group_name=group_name)
            found.append((group["_id"], group_name))
        if group_id is not None and group_id not in (gid for gid, _ in found):
            group = await self.database.groups.find_one(
                {"_id": group_id, "account_id": account_id}, {"group_name": 1}
            )
            if group is None:
                raise GroupNotFound(group_id=group_id)
            found.append((group_id, group["group_name"]))
        return found

    async def create(self, api_version: int, body: dict[str, Any]) -> Doc:
        groups = await self._group_of(
            body["account_id"], body.get("group_name"), body.get("group_id")
        )
        now = now_utc()
        doc = new_stream(str(uuid.uuid4()), api_version, body, groups, now)
        await self._creates.submit(doc)
        return doc

    async def get(self, stream_id: str, account_id: str | None) -> Doc:
        doc = await self.database.streams.find_one(
            one_in_account(stream_id, account_id), VIEW_PROJECTION
        )
        if doc is None:
            raise StreamNotFound(stream_id=stream_id)
        await with_report(self.database, doc)
        return doc

    async def page(self, query: StreamListQueryV2) -> list[Doc]:
        cursor = (
            self.database.streams.find(query.mongo_filter(), VIEW_PROJECTION)
            .sort(query.mongo_sort())
            .skip(query.skip)
            .limit(query.page_size)
        )
        return await with_reports(self.database, await cursor.to_list())

    async def count(self, filters: StreamFiltersV2) -> int:
        return await self.database.streams.count_documents(filters.mongo_filter())

    async def _read_for_change(self, stream_id: str, account_id: str | None) -> Doc:
        doc = await self.database.streams.find_one(one_in_account(stream_id, account_id))
        if doc is None:
            raise StreamNotFound(stream_id=stream_id)
        return doc

    async def patch(
        self,
        stream_id: str,
        account_id: str | None,
        *,
        description: str | None,
        status: str | None,
    ) -> None:
        fields = {} if description is None else {"description": description}
        for _ in range(MAX_CAS_ATTEMPTS):
            doc = await self._read_for_change(stream_id, account_id)
            now = now_utc()
            transition = transitions.patch(doc, status, now)
            if not transition.path and not fields:
                return
            if await self.changes.apply([Change(doc, transition, now, fields=fields)]):
                return
        raise ConcurrentModification(stream_id)

    async def replace(self, stream_id: str, api_version: int, body: dict[str, Any]) -> int:
        """PUT: new settings, version + 1, through ``restart`` to the body's status."""
        new_groups = await self._group_of(
            body["account_id"], body.get("group_name"), body.get("group_id")
        )
        for _ in range(MAX_CAS_ATTEMPTS):
            doc = await self._read_for_change(stream_id, body["account_id"])
            groups = list(doc.get("groups", []))
            names = list(doc.get("group_names", []))
            for group_id, name in new_groups:
                if group_id not in groups:
                    groups.append(group_id)
                    names.append(name)
            now = now_utc()
            transition = transitions.replace(doc, body["status"], now)
            change = Change(
                doc,
                transition,
                now,
                fields={
                    **settings_fields(api_version, body),
                    "groups": groups,
                    "group_names": names,
                },
                details={"error": None, "video_info": None, "preview": None},
            )
            if await self.changes.apply([change]):
                return change.version
        raise ConcurrentModification(stream_id)

    async def delete(self, stream_id: str, account_id: str | None) -> None:
        if not await self.changes.delete(Deletion(account_id, [stream_id])):
            raise StreamNotFound(stream_id=stream_id)

    async def delete_many(
        self, account_id: str | None, stream_ids: list[str] | None, names: list[str] | None
    ) -> int:
        """Delete streams whose id OR name matches; unknown ids and names are ignored.

        Set-based (:meth:`~shared.store.changes.StreamChanges.delete`): the named streams
        are removed in chunks, so that no claim or report lands on them any more, then they
        get their ``deleted`` rows, after every other row of theirs."""
        if not stream_ids and not names:
            return 0
        deletion = Deletion(
            account_id, list(dict.fromkeys(stream_ids or [])), list(dict.fromkeys(names or []))
        )
        return await self.changes.delete(deletion)
