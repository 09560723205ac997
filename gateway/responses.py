"""Response bodies, as models, for the OpenAPI spec (handlers build plain dicts)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, RootModel

from shared.domain.models import (
    EventHandlerV1,
    Location,
    PoliciesV1,
    PreviewUrls,
    StreamDataV1,
    StreamDataV2,
    VideoInfo,
)
from shared.domain.statuses import AutorestartStatus, StoredStatus


class StreamCreated(BaseModel):
    stream_id: str
    version: int


class StreamCountResponse(BaseModel):
    streams_count: int


class AutorestartView(BaseModel):
    restart: Literal[0, 1]
    attempt_count: int
    delay: int
    current_attempt: int
    last_attempt_time: str | None
    status: AutorestartStatus


class _StreamCommon(BaseModel):
    stream_id: str
    account_id: str
    name: str
    description: str
    location: Location | None
    autorestart: AutorestartView
    version: int
    create_time: str
    status: StoredStatus
    last_error: str | None
    video_info: VideoInfo | None
    groups: list[str]
    preview: PreviewUrls | None


class StreamV1(_StreamCommon):
    data: StreamDataV1
    event_handler: EventHandlerV1
    policies: PoliciesV1


class StreamV2(_StreamCommon):
    data: StreamDataV2


class StreamListV1(BaseModel):
    streams: list[StreamV1]


class StreamListV2(BaseModel):
    streams: list[StreamV2]


class GroupCreated(BaseModel):
    group_id: str
    group_name: str


class GroupView(BaseModel):
    group_id: str
    account_id: str
    group_name: str
    description: str
    create_time: str


class GroupList(RootModel[list[GroupView]]):
    """A bare JSON array of groups, oldest first."""


class GroupCountResponse(BaseModel):
    groups_count: int
