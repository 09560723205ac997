"""Showing a stored stream through the other API version.

A stream keeps the form of the version that created or last replaced it: v1 keeps ``data``,
``event_handler`` and ``policies``; v2 keeps ``data`` with ``analytics``. A v1 stream read
through v2 shows one analytics item built from its policies and event handler; a v2 stream
read through v1 shows its first analytics item. Both functions take stored (already
validated) settings and return complete, validated settings of the other version, defaults
filled in.

Field mapping. Abbreviations: ``p.`` = v1 ``policies.``, ``h.`` = v1 ``event_handler.``,
``a.`` = v2 ``data.analytics[0].``; ``—`` = no counterpart.

| v1 | v2 | note |
|---|---|---|
| data.type, reference, roi, rotation | data.(same) | |
| data.preferred_program_stream_frame_width | data.(same) | tcp, udp only |
| data.endless | data.endless | tcp, udp only |
| data.droi | a.droi | |
| p.frame_processing_mode | data.frame_processing_mode | |
| p.real_time_mode_fps | data.real_time_mode_fps | |
| p.ffmpeg_threads_number | data.ffmpeg_threads_number | |
| — | a.mode | 1 (faces) v1→v2; v1 shows 1 or 3, refuses 2 |
| — | a.enabled | true v1→v2; v1 refuses false |
| p.healthcheck | a.healthcheck | |
| p.primary_track_policy | a.primary_track_policy | |
| p.filtering.min_score | a.filtering.min_score_face | |
| — | a.filtering.min_score_body | default 0.5 v1→v2 |
| p.filtering.detection_{yaw,pitch,roll}_threshold | a.filtering.(same) | |
| p.filtering.yaw_number, yaw_collection_mode | a.filtering.(same) | |
| p.filtering.mouth_occlusion_threshold | a.filtering.(same) | |
| p.filtering.min_body_size_threshold | a.filtering.(same) | |
| p.liveness.use_shoulders_liveness_filtration | — | false v2→v1 |
| p.liveness.livenesses_weights [s, m, f] | a.liveness.livenesses_weights [m, f] | s = 0 v2→v1 |
| p.liveness.(the other six fields) | a.liveness.(same) | |
| p.sending.time_period_of_searching | a.sending.(same) | |
| p.sending.silent_period, type | a.sending.(same) | |
| p.sending.number_of_bestshots_to_send | a.sending.bestshot_settings.face_bestshots_to_send | |
| (same, v1→v2 only) | a.sending.bestshot_settings.body_bestshots_to_send | |
| — | a.sending.bestshot_settings.type | default 1 v1→v2 |
| — | a.sending.full_frame_settings | default 1 v1→v2 |
| p.sending.send_only_full_set | a.sending.body.send_only_full_set | |
| p.sending.delete_track_after_sending | a.sending.body.delete_track_after_sending | |
| h.bestshot_handler.handler_id | a.event_handler.handler_id | |
| h.authorization | a.event_handler.authorization | token or account_id |
| — | a.event_handler.type | "luna_handler" |
| h.origin, h.api_version | — | v1 defaults v2→v1 |
| h.detection_handler, h.frame_store | — | null v2→v1 |

v2→v1 uses ``analytics[0]`` only; further items are not shown. It raises
:class:`NotConvertible` when that item cannot stand for a v1 stream: it detects bodies only
(``mode`` 2: a v1 stream always sends face best shots) or it is disabled (v1 has no way to
say so). v1→v2 always succeeds.
"""

from __future__ import annotations

from typing import Any, Final

# re-exported: shared.domain.models and shared.domain.documents take it from here
from shared.core.errors import NotConvertible
from shared.domain.models.v1 import STREAM_DATA_V1, EventHandlerV1, LiveSourceDataV1, PoliciesV1
from shared.domain.models.v2 import (
    ANALYTICS_MODE_BODY,
    ANALYTICS_MODE_FACE,
    LUNA_HANDLER,
    STREAM_DATA_V2,
    AnalyticsV2,
    LiveSourceDataV2,
)

Settings = dict[str, Any]

_SHARED_FILTERING: Final = (
    "detection_yaw_threshold",
    "detection_pitch_threshold",
    "detection_roll_threshold",
    "yaw_number",
    "yaw_collection_mode",
    "mouth_occlusion_threshold",
    "min_body_size_threshold",
)
_SHARED_LIVENESS: Final = (
    "use_mask_liveness_filtration",
    "use_flying_faces_liveness_filtration",
    "liveness_mode",
    "number_of_liveness_checks",
    "liveness_threshold",
    "mask_backgrounds_count",
)
_DATA_POLICIES: Final = ("frame_processing_mode", "real_time_mode_fps", "ffmpeg_threads_number")
_LIVE_SOURCE: Final = ("preferred_program_stream_frame_width", "endless")


def _pick(source: Settings, names: tuple[str, ...]) -> Settings:
    return {name: source[name] for name in names}


def v1_to_v2(data: Settings, event_handler: Settings, policies: Settings) -> Settings:
    """v2 ``data`` (one face analytics item) for stored v1 settings."""
    source = STREAM_DATA_V1.validate_python(data)
    handler = EventHandlerV1.model_validate(event_handler).model_dump(mode="json")
    settings = PoliciesV1.model_validate(policies).model_dump(mode="json")
    sending = settings["sending"]
    filtering = settings["filtering"]
    liveness = settings["liveness"]
    bestshots = sending["number_of_bestshots_to_send"]
    analytics = {
        "mode": ANALYTICS_MODE_FACE,
        "enabled": True,
        "droi": source.droi.model_dump(mode="json"),
        "filtering": {"min_score_face": filtering["min_score"]}
        | _pick(filtering, _SHARED_FILTERING),
        "liveness": _pick(liveness, _SHARED_LIVENESS)
        | {"livenesses_weights": liveness["livenesses_weights"][1:]},
        "primary_track_policy": settings["primary_track_policy"],
        "sending": {
            **_pick(sending, ("time_period_of_searching", "silent_period", "type")),
            "bestshot_settings": {
                "face_bestshots_to_send": bestshots,
                "body_bestshots_to_send": bestshots,
            },
            "body": _pick(sending, ("send_only_full_set", "delete_track_after_sending")),
        },
        "event_handler": {
            "type": LUNA_HANDLER,
            "handler_id": handler["bestshot_handler"]["handler_id"],
            "authorization": handler["authorization"],
        },
        "healthcheck": settings["healthcheck"],
    }
    plain = source.model_dump(mode="json")
    result = _pick(plain, ("type", "reference", "roi", "rotation"))
    result |= _pick(settings, _DATA_POLICIES)
    if isinstance(source, LiveSourceDataV1):
        result |= _pick(plain, _LIVE_SOURCE)
    result["analytics"] = [analytics]
    converted: Settings = STREAM_DATA_V2.dump_python(
        STREAM_DATA_V2.validate_python(result), mode="json"
    )
    return converted


def _first_analytics(item: AnalyticsV2) -> AnalyticsV2:
    if item.mode == ANALYTICS_MODE_BODY:
        raise NotConvertible(
            "its first analytics item detects bodies only (mode 2); "
            "API v1 streams always send face best shots"
        )
    if not item.enabled:
        raise NotConvertible("its first analytics item is disabled; API v1 cannot show that")
    return item


def v2_to_v1(data: Settings) -> tuple[Settings, Settings, Settings]:
    """v1 ``(data, event_handler, policies)`` for stored v2 data (its first analytics item)."""
    source = STREAM_DATA_V2.validate_python(data)
    item = _first_analytics(source.analytics[0]).model_dump(mode="json")
    plain = source.model_dump(mode="json")
    sending = item["sending"]
    liveness = item["liveness"]
    result = _pick(plain, ("type", "reference", "roi", "rotation"))
    result["droi"] = item["droi"]
    if isinstance(source, LiveSourceDataV2):
        result |= _pick(plain, _LIVE_SOURCE)
    handler = {
        "bestshot_handler": {"handler_id": item["event_handler"]["handler_id"]},
        "authorization": item["event_handler"]["authorization"],
    }
    policies = {
        "sending": {
            **_pick(sending, ("time_period_of_searching", "silent_period", "type")),
            "number_of_bestshots_to_send": sending["bestshot_settings"]["face_bestshots_to_send"],
            **sending["body"],
        },
        "primary_track_policy": item["primary_track_policy"],
        "liveness": {
            "use_shoulders_liveness_filtration": False,
            **_pick(liveness, _SHARED_LIVENESS),
            "livenesses_weights": [0, *liveness["livenesses_weights"]],
        },
        "filtering": {"min_score": item["filtering"]["min_score_face"]}
        | _pick(item["filtering"], _SHARED_FILTERING),
        **_pick(plain, _DATA_POLICIES),
        "healthcheck": item["healthcheck"],
    }
    return (
        STREAM_DATA_V1.dump_python(STREAM_DATA_V1.validate_python(result), mode="json"),
        EventHandlerV1.model_validate(handler).model_dump(mode="json"),
        PoliciesV1.model_validate(policies).model_dump(mode="json"),
    )
