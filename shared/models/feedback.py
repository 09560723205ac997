"""Bodies an agent sends: claiming streams from the queue and reporting on them.

Neither carries an account: agents work for every account.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.models.common import (
    INT32_MAX,
    GroupName,
    PositiveCount,
    PreviewUrls,
    StreamName,
    StrictModel,
    UUIDStr,
    VideoInfo,
)
from shared.statuses import FeedbackStatus


class FeedbackItem(StrictModel):
    """One stream's report: its status for the version the agent claimed."""

    stream_id: UUIDStr
    status: FeedbackStatus
    version: Annotated[int, Field(ge=1, le=INT32_MAX)]
    error: str | None = None
    video_info: VideoInfo | None = None
    preview: PreviewUrls | None = None


class FeedbackRequest(StrictModel):
    streams: list[FeedbackItem]


class QueueClaimFilters(StrictModel):
    """Which pending streams an agent takes; an absent (or null) list does not filter."""

    stream_ids: list[UUIDStr] | None = None
    names: list[StreamName] | None = None
    group_ids: list[UUIDStr] | None = None
    group_names: list[GroupName] | None = None


class QueueClaimRequest(StrictModel):
    filters: QueueClaimFilters
    limit: PositiveCount
