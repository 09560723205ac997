"""API v1 stream bodies: ``stream_data`` + top-level ``event_handler`` and ``policies``.

The blocks that v2 keeps unchanged (regions of interest, rotation, authorization,
primary track policy, healthcheck) are defined here and reused by :mod:`shared.domain.models.v2`.

``data`` is a union chosen by ``type``: ``tcp``/``udp`` (live sources) also take
``preferred_program_stream_frame_width`` and ``endless``; ``videofile`` and ``images`` do not.
A region (``roi``/``droi``) is chosen by ``mode``: ``abs`` (pixels, the default) or
``percent`` (0..100 of the frame). Width and height 0 mean "to the frame edge".
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag, TypeAdapter, model_validator
from pydantic_core import PydanticCustomError

from shared.domain.models.common import (
    INT32_MAX,
    AutorestartSettings,
    Count,
    GroupName,
    JsonNumber,
    Location,
    NonNegativeNumber,
    NotBool,
    Score,
    StreamDescription,
    StreamName,
    StrictModel,
    UUIDStr,
)
from shared.domain.statuses import CREATE_STATUSES, PATCH_STATUSES, PENDING

ROI_ABS_MAX: Final = 65536
GROUP_NAME_DESCRIPTION: Final = (
    "Link the new stream to the account's group with this name (39007 when there is none)."
)
GROUP_ID_DESCRIPTION: Final = (
    "Link the new stream to the account's group with this id (39008 when there is none); "
    "as FaceStream's manual describes. With `group_name` too, the stream joins both."
)
DEFAULT_LUNA_API_ORIGIN: Final = "http://127.0.0.1:5000"
DEFAULT_LUNA_API_VERSION: Final = 6

AbsCoordinate = Annotated[int, Field(ge=0, le=ROI_ABS_MAX)]
PercentCoordinate = Annotated[int | float, JsonNumber(ge=0, le=100)]
Angle = Annotated[int | float, JsonNumber(ge=0, le=180)]
Seconds = Annotated[int | float, JsonNumber(ge=-1, le=INT32_MAX)]
Reference = Annotated[str, StringConstraints(max_length=512)]
Rotation = Annotated[Literal[0, 90, 180, 270], NotBool]
FrameProcessingMode = Literal["auto", "full", "scale"]
SendingPeriodType = Literal["sec", "frames"]


class RoiAbs(StrictModel):
    x: AbsCoordinate
    y: AbsCoordinate
    width: AbsCoordinate
    height: AbsCoordinate
    mode: Literal["abs"] = "abs"


class RoiPercent(StrictModel):
    x: PercentCoordinate
    y: PercentCoordinate
    width: PercentCoordinate
    height: PercentCoordinate
    mode: Literal["percent"]


def _roi_mode(value: Any) -> str | None:
    if isinstance(value, RoiAbs | RoiPercent):
        return value.mode
    if not isinstance(value, dict):
        return None
    mode = value.get("mode", "abs")
    return mode if isinstance(mode, str) else repr(mode)


Roi = Annotated[
    Annotated[RoiAbs, Tag("abs")] | Annotated[RoiPercent, Tag("percent")],
    Discriminator(_roi_mode),
]


def full_frame() -> RoiAbs:
    """The default region: the whole frame."""
    return RoiAbs(x=0, y=0, width=0, height=0)


class TokenAuthorization(StrictModel):
    token: str


class AccountAuthorization(StrictModel):
    account_id: UUIDStr


def _authorization_kind(value: Any) -> str | None:
    if isinstance(value, AccountAuthorization):
        return "account_id"
    if isinstance(value, TokenAuthorization):
        return "token"
    if not isinstance(value, dict):
        return None
    return "account_id" if "account_id" in value and "token" not in value else "token"


Authorization = Annotated[
    Annotated[TokenAuthorization, Tag("token")]
    | Annotated[AccountAuthorization, Tag("account_id")],
    Discriminator(_authorization_kind),
]


class HandlerRef(StrictModel):
    handler_id: UUIDStr


class PrimaryTrackPolicy(StrictModel):
    use_primary_track_policy: bool = False
    best_shot_min_size: Count = 70
    best_shot_proper_size: Count = 140


class HealthcheckPolicy(StrictModel):
    max_error_count: Count = 10
    period: Count = 3600
    retry_delay: Count = 5
    timeout: Count = INT32_MAX


# --- data ------------------------------------------------------------------------------


class _StreamDataBaseV1(StrictModel):
    type: str
    reference: Reference | None = None
    roi: Roi = Field(default_factory=full_frame)
    droi: Roi = Field(default_factory=full_frame)
    rotation: Rotation = 0


class _LiveSourceV1(_StreamDataBaseV1):
    preferred_program_stream_frame_width: Annotated[int, Field(ge=1, le=INT32_MAX)] = 800
    endless: bool = True


class TcpDataV1(_LiveSourceV1):
    type: Literal["tcp"]
    reference: Reference


class UdpDataV1(_LiveSourceV1):
    """The seed's udp examples carry no ``reference``; it is optional for udp only."""

    type: Literal["udp"]


class VideoFileDataV1(_StreamDataBaseV1):
    type: Literal["videofile"]
    reference: Reference


class ImagesDataV1(_StreamDataBaseV1):
    type: Literal["images"]
    reference: Reference


StreamDataV1 = Annotated[
    TcpDataV1 | UdpDataV1 | VideoFileDataV1 | ImagesDataV1, Field(discriminator="type")
]
LiveSourceDataV1 = (TcpDataV1, UdpDataV1)
STREAM_DATA_V1: Final = TypeAdapter[StreamDataV1](StreamDataV1)

# --- event handler ---------------------------------------------------------------------


AUTHORIZATION_DEFAULT: Final = (
    "How the agent authorizes in LUNA PLATFORM. Absent (or null): the stream's own "
    'account, stored and shown as `{"account_id": <the stream\'s account_id>}`.'
)


class EventHandlerV1(StrictModel):
    origin: str = DEFAULT_LUNA_API_ORIGIN
    api_version: Annotated[int, Field(ge=1, le=INT32_MAX)] = DEFAULT_LUNA_API_VERSION
    bestshot_handler: HandlerRef
    detection_handler: HandlerRef | None = None
    frame_store: str | None = None
    authorization: Authorization | None = Field(default=None, description=AUTHORIZATION_DEFAULT)

    def authorize_as(self, account_id: str) -> None:
        """Fill an absent ``authorization`` with the stream's account."""
        if self.authorization is None:
            self.authorization = AccountAuthorization(account_id=account_id)


# --- policies --------------------------------------------------------------------------


class SendingPolicyV1(StrictModel):
    time_period_of_searching: Seconds = -1
    silent_period: Seconds = 0
    type: SendingPeriodType = "sec"
    number_of_bestshots_to_send: Count = 1
    send_only_full_set: bool = True
    delete_track_after_sending: bool = False


def _weights_v1() -> list[int | float]:
    return [0.05, 0.45, 0.5]


class LivenessPolicyV1(StrictModel):
    """``livenesses_weights`` are [shoulders, mask, flying faces]."""

    use_shoulders_liveness_filtration: bool = False
    use_mask_liveness_filtration: bool = False
    use_flying_faces_liveness_filtration: bool = False
    liveness_mode: Annotated[Literal[0, 1, 2], NotBool] = 0
    number_of_liveness_checks: Count = 10
    liveness_threshold: Score = 0.6
    livenesses_weights: Annotated[list[Score], Field(min_length=3, max_length=3)] = Field(
        default_factory=_weights_v1
    )
    mask_backgrounds_count: Count = 300


class FilteringPolicyV1(StrictModel):
    min_score: Score = 0.5187
    detection_yaw_threshold: Angle = 40
    detection_pitch_threshold: Angle = 40
    detection_roll_threshold: Angle = 30
    yaw_number: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    yaw_collection_mode: bool = False
    mouth_occlusion_threshold: Score = 0
    min_body_size_threshold: NonNegativeNumber = 0


class PoliciesV1(StrictModel):
    sending: SendingPolicyV1 = Field(default_factory=SendingPolicyV1)
    primary_track_policy: PrimaryTrackPolicy = Field(default_factory=PrimaryTrackPolicy)
    liveness: LivenessPolicyV1 = Field(default_factory=LivenessPolicyV1)
    filtering: FilteringPolicyV1 = Field(default_factory=FilteringPolicyV1)
    frame_processing_mode: FrameProcessingMode = "auto"
    real_time_mode_fps: Count = 0
    ffmpeg_threads_number: Count = 0
    healthcheck: HealthcheckPolicy = Field(default_factory=HealthcheckPolicy)


# --- bodies ----------------------------------------------------------------------------


class StreamCreateV1(StrictModel):
    """Create (POST) and replace (PUT) body of API v1.

    ``status`` is any string here: a value outside ``ALLOWED_STATUSES`` is the service's
    own error (39002), not a schema error.
    """

    ALLOWED_STATUSES: ClassVar[tuple[str, ...]] = CREATE_STATUSES

    account_id: UUIDStr
    name: StreamName = ""
    description: StreamDescription = ""
    data: StreamDataV1
    event_handler: EventHandlerV1
    policies: PoliciesV1 = Field(default_factory=PoliciesV1)
    location: Location = Field(default_factory=Location)
    autorestart: AutorestartSettings = Field(default_factory=AutorestartSettings)
    status: str = Field(default=PENDING, json_schema_extra={"enum": list(CREATE_STATUSES)})
    group_name: GroupName | None = Field(default=None, description=GROUP_NAME_DESCRIPTION)
    group_id: UUIDStr | None = Field(default=None, description=GROUP_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _authorize(self) -> StreamCreateV1:
        self.event_handler.authorize_as(self.account_id)
        return self


class StreamPatch(StrictModel):
    """PATCH body (same in v1 and v2): at least one of ``description`` and ``status``.

    ``status`` outside ``ALLOWED_STATUSES`` is the service's 39002, as on create.
    """

    ALLOWED_STATUSES: ClassVar[tuple[str, ...]] = PATCH_STATUSES

    description: Annotated[str, StringConstraints(max_length=128)] | None = None
    status: str | None = Field(default=None, json_schema_extra={"enum": [*PATCH_STATUSES, None]})

    @model_validator(mode="after")
    def _not_empty(self) -> StreamPatch:
        if self.description is None and self.status is None:
            raise PydanticCustomError("at_least_one_field", "at least one field must have a value")
        return self
