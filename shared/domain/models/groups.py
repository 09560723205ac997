"""Bodies of the group routes, the linker and the bulk stream delete (same in v1 and v2)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from shared.domain.models.common import GroupName, StreamName, StrictModel, UUIDStr

MAX_IDS_PER_REQUEST: Final = 1000

GroupDescription = Annotated[str, StringConstraints(max_length=256)]


class GroupCreate(StrictModel):
    account_id: UUIDStr
    group_name: GroupName
    description: GroupDescription = ""


class GroupPatch(StrictModel):
    description: GroupDescription


class LinkerRequest(StrictModel):
    """Attach or detach up to 1000 streams to/from one group."""

    action: Literal["attach", "detach"]
    stream_ids: Annotated[list[UUIDStr], Field(max_length=MAX_IDS_PER_REQUEST)]
    group_id: UUIDStr


class StreamsDeleteRequest(StrictModel):
    """Delete the streams matching either list (OR); ``null`` is the same as absent."""

    stream_ids: Annotated[list[UUIDStr], Field(max_length=MAX_IDS_PER_REQUEST)] | None = None
    names: Annotated[list[StreamName], Field(max_length=MAX_IDS_PER_REQUEST)] | None = None
