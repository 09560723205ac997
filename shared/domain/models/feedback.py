"""Bodies an agent sends: claiming streams from the queue and reporting on them.

Neither carries an account: agents work for every account.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from shared.domain.models.common import (
    ERROR_MAX_LENGTH,
    INT32_MAX,
    GroupName,
    PositiveCount,
    PreviewUrls,
    StreamName,
    StrictModel,
    UUIDStr,
    VideoInfo,
)
from shared.domain.statuses import FeedbackStatus

#: reports in one feedback batch (FaceStream sends one per stream it holds; the API's other
#: lists of streams stop at 1000 too)
FEEDBACK_MAX_ITEMS = 1000


class FeedbackItem(StrictModel):
    """One stream's report: its status for the version the agent claimed."""

    stream_id: UUIDStr
    status: FeedbackStatus
    version: Annotated[int, Field(ge=1, le=INT32_MAX)]
    error: (
        Annotated[
            str,
            StringConstraints(max_length=ERROR_MAX_LENGTH),
            Field(description=f"What went wrong, at most {ERROR_MAX_LENGTH} characters."),
        ]
        | None
    ) = None
    video_info: VideoInfo | None = None
    preview: PreviewUrls | None = None


class FeedbackRequest(StrictModel):
    streams: list[FeedbackItem] = Field(
        max_length=FEEDBACK_MAX_ITEMS,
        description=f"One report per stream, at most {FEEDBACK_MAX_ITEMS}; a stream named "
        "more than once is reported in order, and only the last of its reports is logged.",
    )


class QueueClaimFilters(StrictModel):
    """Which pending streams an agent takes; an absent (or null) list does not filter."""

    stream_ids: list[UUIDStr] | None = None
    names: list[StreamName] | None = None
    group_ids: list[UUIDStr] | None = None
    group_names: list[GroupName] | None = None


class QueueClaimRequest(StrictModel):
    filters: QueueClaimFilters
    limit: PositiveCount
