"""API v2 stream bodies (``stream_data_v2``): no top-level ``event_handler`` or ``policies``.

The processing settings live in ``data``: ``frame_processing_mode``, ``real_time_mode_fps``
and ``ffmpeg_threads_number`` beside the source, and everything about detection and sending
in ``analytics``, a list of at least one item. Compared with v1 (FaceStream 5.2 notes):
the LUNA API address and version left the event handler, ``min_score`` became
``min_score_face``/``min_score_body``, ``number_of_bestshots_to_send`` became
``face_bestshots_to_send``/``body_bestshots_to_send`` and deprecated fields
(``detection_handler``) are gone.

``analytics[].mode`` says what is detected: 1 faces, 2 bodies, 3 faces and bodies together.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field, TypeAdapter, model_validator

from shared.domain.models.common import (
    INT32_MAX,
    AutorestartSettings,
    Count,
    GroupName,
    Location,
    NonNegativeNumber,
    NotBool,
    Score,
    StreamDescription,
    StreamName,
    StrictModel,
    UUIDStr,
)
from shared.domain.models.v1 import (
    AUTHORIZATION_DEFAULT,
    GROUP_ID_DESCRIPTION,
    GROUP_NAME_DESCRIPTION,
    AccountAuthorization,
    Angle,
    Authorization,
    FrameProcessingMode,
    HealthcheckPolicy,
    PrimaryTrackPolicy,
    Reference,
    Roi,
    Rotation,
    Seconds,
    SendingPeriodType,
    full_frame,
)
from shared.domain.statuses import CREATE_STATUSES, PENDING

ANALYTICS_MODE_FACE: Final = 1
ANALYTICS_MODE_BODY: Final = 2
ANALYTICS_MODE_FACE_AND_BODY: Final = 3
LUNA_HANDLER: Final = "luna_handler"

AnalyticsMode = Annotated[Literal[1, 2, 3], NotBool]


class BodySendingV2(StrictModel):
    send_only_full_set: bool = True
    delete_track_after_sending: bool = False


class BestshotSettingsV2(StrictModel):
    type: Count = 1
    face_bestshots_to_send: Count = 1
    body_bestshots_to_send: Count = 1


class SendingPolicyV2(StrictModel):
    time_period_of_searching: Seconds = -1
    silent_period: Seconds = 0
    type: SendingPeriodType = "sec"
    full_frame_settings: Count = 1
    bestshot_settings: BestshotSettingsV2 = Field(default_factory=BestshotSettingsV2)
    body: BodySendingV2 = Field(default_factory=BodySendingV2)


class FilteringPolicyV2(StrictModel):
    min_score_face: Score = 0.5187
    min_score_body: Score = 0.5
    detection_yaw_threshold: Angle = 40
    detection_pitch_threshold: Angle = 40
    detection_roll_threshold: Angle = 30
    yaw_number: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    yaw_collection_mode: bool = False
    mouth_occlusion_threshold: Score = 0
    min_body_size_threshold: NonNegativeNumber = 0


def _weights_v2() -> list[int | float]:
    return [0.45, 0.5]


class LivenessPolicyV2(StrictModel):
    """``livenesses_weights`` are [mask, flying faces] (v1's shoulders check is gone)."""

    use_mask_liveness_filtration: bool = False
    use_flying_faces_liveness_filtration: bool = False
    liveness_mode: Annotated[Literal[0, 1, 2], NotBool] = 0
    number_of_liveness_checks: Count = 10
    liveness_threshold: Score = 0.6
    livenesses_weights: Annotated[list[Score], Field(min_length=2, max_length=2)] = Field(
        default_factory=_weights_v2
    )
    mask_backgrounds_count: Count = 300


class EventHandlerV2(StrictModel):
    type: Literal["luna_handler"] = LUNA_HANDLER
    handler_id: UUIDStr
    authorization: Authorization | None = Field(default=None, description=AUTHORIZATION_DEFAULT)

    def authorize_as(self, account_id: str) -> None:
        """Fill an absent ``authorization`` with the stream's account."""
        if self.authorization is None:
            self.authorization = AccountAuthorization(account_id=account_id)


class AnalyticsV2(StrictModel):
    mode: AnalyticsMode = ANALYTICS_MODE_FACE
    enabled: bool = True
    droi: Roi = Field(default_factory=full_frame)
    filtering: FilteringPolicyV2 = Field(default_factory=FilteringPolicyV2)
    liveness: LivenessPolicyV2 = Field(default_factory=LivenessPolicyV2)
    primary_track_policy: PrimaryTrackPolicy = Field(default_factory=PrimaryTrackPolicy)
    sending: SendingPolicyV2 = Field(default_factory=SendingPolicyV2)
    event_handler: EventHandlerV2
    healthcheck: HealthcheckPolicy = Field(default_factory=HealthcheckPolicy)


class _StreamDataBaseV2(StrictModel):
    type: str
    reference: Reference | None = None
    roi: Roi = Field(default_factory=full_frame)
    rotation: Rotation = 0
    frame_processing_mode: FrameProcessingMode = "auto"
    real_time_mode_fps: Count = 0
    ffmpeg_threads_number: Count = 0
    analytics: Annotated[list[AnalyticsV2], Field(min_length=1)]


class _LiveSourceV2(_StreamDataBaseV2):
    preferred_program_stream_frame_width: Annotated[int, Field(ge=1, le=INT32_MAX)] = 800
    endless: bool = True


class TcpDataV2(_LiveSourceV2):
    type: Literal["tcp"]
    reference: Reference


class UdpDataV2(_LiveSourceV2):
    """As in v1, the seed's udp examples carry no ``reference``: optional for udp only."""

    type: Literal["udp"]


class VideoFileDataV2(_StreamDataBaseV2):
    type: Literal["videofile"]
    reference: Reference


class ImagesDataV2(_StreamDataBaseV2):
    type: Literal["images"]
    reference: Reference


StreamDataV2 = Annotated[
    TcpDataV2 | UdpDataV2 | VideoFileDataV2 | ImagesDataV2, Field(discriminator="type")
]
LiveSourceDataV2 = (TcpDataV2, UdpDataV2)
STREAM_DATA_V2: Final = TypeAdapter[StreamDataV2](StreamDataV2)


class StreamCreateV2(StrictModel):
    """Create (POST) and replace (PUT) body of API v2; ``status`` as in v1 (39002)."""

    ALLOWED_STATUSES: ClassVar[tuple[str, ...]] = CREATE_STATUSES

    account_id: UUIDStr
    name: StreamName = ""
    description: StreamDescription = ""
    data: StreamDataV2
    location: Location = Field(default_factory=Location)
    autorestart: AutorestartSettings = Field(default_factory=AutorestartSettings)
    status: str = Field(default=PENDING, json_schema_extra={"enum": list(CREATE_STATUSES)})
    group_name: GroupName | None = Field(default=None, description=GROUP_NAME_DESCRIPTION)
    group_id: UUIDStr | None = Field(default=None, description=GROUP_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _authorize(self) -> StreamCreateV2:
        for item in self.data.analytics:
            item.event_handler.authorize_as(self.account_id)
        return self
