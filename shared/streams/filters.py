"""Query parameters of stream lists and counts, and their MongoDB filters and sorts.

Every filter here is served by an index of :mod:`shared.mongo` (``streams``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from shared.statuses import STORED

UUID_PATTERN = r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$"
QueryUUID = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
QueryGroupName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_\-]{1,128}$")]
StreamName = Annotated[str, StringConstraints(max_length=128)]
StoredStatus = Literal["pending", "in_progress", "done", "pause", "cancel", "failure"]
assert set(StoredStatus.__args__) == set(STORED)  # type: ignore[attr-defined]


class AccountQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: QueryUUID | None = Field(default=None, description="Account ID.")


class StreamFiltersV2(AccountQuery):
    stream_ids: list[QueryUUID] | None = Field(
        default=None, max_length=1000, description="Only streams with these ids."
    )
    names: list[StreamName] | None = Field(
        default=None, max_length=1000, description="Only streams with these names."
    )
    reference: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Only streams with this source reference."
    )
    statuses: list[StoredStatus] | None = Field(
        default=None, description="Only streams in these statuses."
    )
    create_time__gte: AwareDatetime | None = Field(
        default=None, description="Created at or after this time (RFC 3339)."
    )
    create_time__lt: AwareDatetime | None = Field(
        default=None, description="Created before this time (RFC 3339)."
    )
    group_name: QueryGroupName | None = Field(
        default=None, description="Only streams of the group with this name."
    )

    def mongo_filter(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.account_id is not None:
            query["account_id"] = self.account_id
        ids: dict[str, Any] = {}
        if self.stream_ids is not None:
            ids["$in"] = self.stream_ids
        gte = getattr(self, "stream_id__gte", None)
        lt = getattr(self, "stream_id__lt", None)
        if gte is not None:
            ids["$gte"] = gte
        if lt is not None:
            ids["$lt"] = lt
        if ids:
            query["_id"] = ids
        if self.names is not None:
            query["name"] = {"$in": self.names}
        if self.reference is not None:
            query["data.reference"] = self.reference
        if self.statuses is not None:
            query["status"] = {"$in": self.statuses}
        created: dict[str, Any] = {}
        if self.create_time__gte is not None:
            created["$gte"] = self.create_time__gte
        if self.create_time__lt is not None:
            created["$lt"] = self.create_time__lt
        if created:
            query["create_time"] = created
        if self.group_name is not None:
            query["group_names"] = self.group_name
        return query


class StreamFiltersV1(StreamFiltersV2):
    stream_id__gte: QueryUUID | None = Field(
        default=None, description="Stream id lower included bound."
    )
    stream_id__lt: QueryUUID | None = Field(
        default=None, description="Stream id upper excluded bound."
    )


class Page(BaseModel):
    page: int = Field(default=1, ge=1, description="Page number.")
    page_size: int = Field(default=10, ge=1, le=1000, description="Number of items on page.")

    @property
    def skip(self) -> int:
        return (self.page - 1) * self.page_size


class StreamListQueryV2(StreamFiltersV2, Page):
    def mongo_sort(self) -> list[tuple[str, int]]:
        return [("create_time", 1), ("_id", 1)]


class StreamListQueryV1(StreamFiltersV1, Page):
    order: Literal["asc", "desc"] = Field(
        default="asc",
        description=(
            "Sort order: by creation time, or by stream id when a stream id range is given."
        ),
    )

    def mongo_sort(self) -> list[tuple[str, int]]:
        direction = 1 if self.order == "asc" else -1
        if self.stream_id__gte is not None or self.stream_id__lt is not None:
            return [("_id", direction)]
        return [("create_time", direction), ("_id", direction)]
