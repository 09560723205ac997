"""Query parameters of stream lists and counts, and their MongoDB filters and sorts.

Every filter here is served by an index of :mod:`shared.store.mongo` (``streams``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.domain.documents import V1_VISIBLE
from shared.domain.models import common
from shared.domain.models.common import QueryTime
from shared.domain.statuses import LoggedStatus

# The query types are the body types (:mod:`shared.domain.models.common`): one pattern each.
QueryUUID = common.UUIDStr
QueryGroupName = common.GroupName
StreamName = common.StreamName
#: MongoDB takes a 64-bit skip; any page past it is past the end of every collection anyway
MAX_SKIP: Final = 2**62

#: the reference's ``stream_status``, the type of both the streams' and the logs' ``statuses``
StreamStatus = LoggedStatus

#: why a list filter takes any number of items: the reference gives no limit; the request
#: line (``gateway.app.MAX_REQUEST_LINE``) bounds it, and duplicates are dropped
LIST_FILTER_NOTE = " Any number of items, within the request line's size; duplicates count once."


class AccountQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: QueryUUID | None = Field(default=None, description="Account ID.")


class StreamFiltersV2(AccountQuery):
    stream_ids: list[QueryUUID] | None = Field(
        default=None, description="Only streams with these ids." + LIST_FILTER_NOTE
    )
    stream_id__gte: QueryUUID | None = Field(
        default=None,
        description="Stream id lower included bound (the reference lists it for v1; "
        "v2 honours it as well).",
    )
    stream_id__lt: QueryUUID | None = Field(
        default=None,
        description="Stream id upper excluded bound (the reference lists it for v1; "
        "v2 honours it as well).",
    )
    names: list[StreamName] | None = Field(
        default=None, description="Only streams with these names." + LIST_FILTER_NOTE
    )
    reference: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Only streams with this source reference."
    )
    statuses: list[StreamStatus] | None = Field(
        default=None,
        description="Only streams in these statuses. The type is the reference's "
        "`stream_status`, the same as the logs' `statuses`, so both take the same values; "
        "`restart`, `handler_lost` (transient) and `deleted` (virtual) are never a stream's "
        "current status, so they match no stream here (they appear in stream logs).",
    )
    create_time__gte: QueryTime | None = Field(
        default=None, description="Created at or after this time (RFC 3339)."
    )
    create_time__lt: QueryTime | None = Field(
        default=None, description="Created before this time (RFC 3339)."
    )
    group_name: QueryGroupName | None = Field(
        default=None, description="Only streams of the group with this name."
    )

    def mongo_filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.account_id is not None:
            query["account_id"] = self.account_id
        ids = bounds(self.stream_id__gte, self.stream_id__lt)
        if self.stream_ids is not None:
            ids["$in"] = list(dict.fromkeys(self.stream_ids))
        if ids:
            query["_id"] = ids
        if self.names is not None:
            query["name"] = {"$in": list(dict.fromkeys(self.names))}
        if self.reference is not None:
            query["data.reference"] = self.reference
        if self.statuses is not None:
            query["status"] = {"$in": list(dict.fromkeys(self.statuses))}
        created = bounds(self.create_time__gte, self.create_time__lt)
        if created:
            query["create_time"] = created
        if self.group_name is not None:
            query["group_names"] = self.group_name
        return query


def bounds(gte: Any, lt: Any) -> dict[str, Any]:
    """``{"$gte": gte, "$lt": lt}`` without the absent (None) bounds: a half-open range of a
    query (stream ids, creation times, log times, audit times); empty when both are absent."""
    return {op: value for op, value in (("$gte", gte), ("$lt", lt)) if value is not None}


def one_in_account(doc_id: str, account_id: str | None) -> dict[str, Any]:
    """The query of one document by id, limited to ``account_id``'s when one is given (the
    ``account_id`` query parameter of a route on one stream, group or webhook)."""
    query: dict[str, Any] = {"_id": doc_id}
    if account_id is not None:
        query["account_id"] = account_id
    return query


class StreamFiltersV1(StreamFiltersV2):
    def mongo_filter(self) -> dict[str, Any]:
        return {**super().mongo_filter(), **V1_VISIBLE}


class Page(BaseModel):
    page: int = Field(default=1, ge=1, description="Page number.")
    page_size: int = Field(default=10, ge=1, le=1000, description="Number of items on page.")

    @property
    def skip(self) -> int:
        return min((self.page - 1) * self.page_size, MAX_SKIP)


class StreamListQueryV2(StreamFiltersV2, Page):
    order: Literal["asc", "desc"] = Field(
        default="asc",
        description=(
            "Sort order: by creation time, or by stream id when a stream id range is given "
            "(the reference lists it for v1; v2 honours it as well)."
        ),
    )

    def mongo_sort(self) -> list[tuple[str, int]]:
        direction = 1 if self.order == "asc" else -1
        if self.stream_id__gte is not None or self.stream_id__lt is not None:
            return [("_id", direction)]
        return [("create_time", direction), ("_id", direction)]


class StreamListQueryV1(StreamFiltersV1, StreamListQueryV2):
    pass
