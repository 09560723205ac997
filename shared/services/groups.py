"""Groups and the linker.

``group_name`` is unique per account through a unique index (a racing create gets 39006,
never a duplicate). Streams keep the ids and names of their groups (names never change).

Streams join and leave groups through the change writer (:mod:`shared.store.changes`), as
the status machine describes it (:func:`shared.domain.transitions.attach`,
:func:`~shared.domain.transitions.detach_guard`): a ``pending`` stream that joins gets its
token in the group's queue through its outbox, and a stream that enters ``pending`` while it
joins is read again (every change into ``pending`` is guarded by the groups it read).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import DuplicateKeyError

from shared.core.clock import now_utc
from shared.core.errors import ConcurrentModification, GroupExists, GroupNotFound, StreamNotFound
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.documents import format_time
from shared.domain.filters import LIST_FILTER_NOTE, Page, QueryGroupName, QueryUUID, one_in_account
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import Database


class GroupFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: QueryUUID | None = Field(default=None, description="Account ID.")
    group_ids: list[QueryUUID] | None = Field(
        default=None, description="Only groups with these ids." + LIST_FILTER_NOTE
    )
    group_names: list[QueryGroupName] | None = Field(
        default=None, description="Only groups with these names." + LIST_FILTER_NOTE
    )

    def mongo_filter(self) -> Doc:
        query: Doc = {}
        if self.account_id is not None:
            query["account_id"] = self.account_id
        if self.group_ids is not None:
            query["_id"] = {"$in": list(dict.fromkeys(self.group_ids))}
        if self.group_names is not None:
            query["group_name"] = {"$in": list(dict.fromkeys(self.group_names))}
        return query


class GroupListQuery(GroupFilters, Page):
    pass


def group_view(doc: Doc) -> Doc:
    return {
        "group_id": doc["_id"],
        "account_id": doc["account_id"],
        "group_name": doc["group_name"],
        "description": doc["description"],
        "create_time": format_time(doc["create_time"]),
    }


#: what attaching a stream reads of it (its guard, and its group token)
ATTACH_READ: Doc = {"status": 1, "version": 1, "queued_at": 1, "groups": 1}
#: an attach reads the streams still out of the group again at most this often
ATTACH_ROUNDS = 20


class GroupService:
    def __init__(self, database: Database, changes: StreamChanges) -> None:
        self.database = database
        self.changes = changes

    async def create(self, account_id: str, group_name: str, description: str) -> Doc:
        doc = {
            "_id": str(uuid.uuid4()),
            "account_id": account_id,
            "group_name": group_name,
            "description": description,
            "create_time": now_utc(),
        }
        try:
            await self.database.groups.insert_one(doc)
        except DuplicateKeyError:
            raise GroupExists(group_name=group_name) from None
        return doc

    async def get(self, group_id: str, account_id: str | None) -> Doc:
        doc = await self.database.groups.find_one(one_in_account(group_id, account_id))
        if doc is None:
            raise GroupNotFound(group_id=group_id)
        return doc

    async def page(self, query: GroupListQuery) -> list[Doc]:
        cursor = (
            self.database.groups.find(query.mongo_filter())
            .sort([("create_time", 1), ("_id", 1)])
            .skip(query.skip)
            .limit(query.page_size)
        )
        return await cursor.to_list()

    async def count(self, filters: GroupFilters) -> int:
        return await self.database.groups.count_documents(filters.mongo_filter())

    async def patch(self, group_id: str, account_id: str | None, description: str) -> None:
        result = await self.database.groups.update_one(
            one_in_account(group_id, account_id), {"$set": {"description": description}}
        )
        if not result.matched_count:
            raise GroupNotFound(group_id=group_id)

    async def delete(self, group_id: str, account_id: str | None) -> Doc:
        """Unlink the group's streams (they stay), remove the group, then its queue."""
        group = await self.get(group_id, account_id)
        # by name in its account (index ``group_names``): the same streams as by its id
        await self.changes.leave_group(
            {"account_id": group["account_id"], "group_names": group["group_name"]},
            group_id,
            group["group_name"],
        )
        await self.database.groups.delete_one({"_id": group_id})
        if self.changes.publisher is not None:
            await self.changes.publisher.drop_group_queue(group_id)
        return group

    async def link(
        self,
        account_id: str | None,
        group_id: str,
        action: Literal["attach", "detach"],
        stream_ids: list[str],
    ) -> None:
        """Attach or detach streams; all of them exist in the group's account, or nothing
        changes (39001 names the first missing one). Repeating it changes nothing more."""
        group = await self.get(group_id, account_id)
        wanted: list[str] = list(dict.fromkeys(stream_ids))
        found = {
            doc["_id"]
            async for doc in self.database.streams.find(
                {"_id": {"$in": wanted}, "account_id": group["account_id"]}, {"_id": 1}
            )
        }
        missing = [sid for sid in wanted if sid not in found]
        if missing:
            raise StreamNotFound(stream_id=missing[0])
        name = group["group_name"]
        if action == "detach":
            await self.changes.leave_group({"_id": {"$in": wanted}}, group_id, name)
            return
        scope: Doc = {"_id": {"$in": wanted}}
        for _ in range(ATTACH_ROUNDS):
            await self.changes.join_group(scope, group_id, name)
            # the pending ones (and any that entered pending meanwhile), one change each
            out = await self.database.streams.find(
                {**scope, **transitions.out_of_group(group_id)}, ATTACH_READ
            ).to_list()
            if not out:
                return
            now = now_utc()
            await self.changes.apply(
                [Change(doc, transitions.attach(doc, group_id, name), now) for doc in out]
            )
        raise ConcurrentModification(group_id)
