"""v1 <-> v2 conversion of stored stream settings."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.errors import NotConvertible
from shared.domain.models import (
    STREAM_DATA_V1,
    STREAM_DATA_V2,
    EventHandlerV1,
    PoliciesV1,
    v1_to_v2,
    v2_to_v1,
)

Example = Callable[[str], Any]
Settings = dict[str, Any]
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stored_v1(data: Settings, handler: Settings, policies: Settings) -> tuple[Settings, ...]:
    """Settings as the service stores them: validated, every default filled in."""
    return (
        STREAM_DATA_V1.dump_python(STREAM_DATA_V1.validate_python(data), mode="json"),
        EventHandlerV1.model_validate(handler).model_dump(mode="json"),
        PoliciesV1.model_validate(policies).model_dump(mode="json"),
    )


def v1_surviving(data: Settings, handler: Settings, policies: Settings) -> tuple[Settings, ...]:
    """What v2 can carry of v1 settings (see the mapping table in shared.domain.models.convert)."""
    data, handler, policies = copy.deepcopy(stored_v1(data, handler, policies))
    handler = {key: handler[key] for key in ("bestshot_handler", "authorization")}
    liveness = policies["liveness"]
    liveness.pop("use_shoulders_liveness_filtration")
    liveness["livenesses_weights"] = liveness["livenesses_weights"][1:]
    return data, handler, policies


def v2_surviving(data: Settings) -> Settings:
    """What v1 can carry of v2 data: its first analytics item, face settings."""
    data = STREAM_DATA_V2.dump_python(STREAM_DATA_V2.validate_python(data), mode="json")
    item = data["analytics"][0]
    item["mode"] = 1
    item["filtering"].pop("min_score_body")
    bestshots = item["sending"]["bestshot_settings"]
    item["sending"]["bestshot_settings"] = bestshots["face_bestshots_to_send"]
    item["sending"].pop("full_frame_settings")
    data["analytics"] = [item]
    return data


def test_seed_v1_stream_converts_to_v2_and_back(seed_example: Example) -> None:
    stream = seed_example("v1_stream_udp")
    settings_v1 = (stream["data"], stream["event_handler"], stream["policies"])
    converted = v1_to_v2(*settings_v1)
    assert STREAM_DATA_V2.validate_python(converted)
    item = converted["analytics"][0]
    assert item["droi"] == stream["data"]["droi"]
    assert "droi" not in converted
    assert converted["frame_processing_mode"] == stream["policies"]["frame_processing_mode"]
    assert item["filtering"]["min_score_face"] == stream["policies"]["filtering"]["min_score"]
    assert item["liveness"]["livenesses_weights"] == [0.45, 0.5]
    assert item["sending"]["body"] == {
        "send_only_full_set": True,
        "delete_track_after_sending": False,
    }
    assert item["event_handler"] == {
        "type": "luna_handler",
        "handler_id": stream["event_handler"]["bestshot_handler"]["handler_id"],
        "authorization": stream["event_handler"]["authorization"],
    }
    back = v2_to_v1(converted)
    assert v1_surviving(*back) == v1_surviving(*settings_v1)
    assert back[0] == stored_v1(*settings_v1)[0]


def test_seed_v2_stream_converts_to_v1_and_back(seed_example: Example) -> None:
    data = seed_example("v2_stream_udp")["data"]
    v1_data, handler, policies = v2_to_v1(data)
    assert STREAM_DATA_V1.validate_python(v1_data)
    assert v1_data["droi"] == data["analytics"][0]["droi"]
    assert handler["bestshot_handler"] == {
        "handler_id": data["analytics"][0]["event_handler"]["handler_id"]
    }
    assert policies["healthcheck"] == data["analytics"][0]["healthcheck"]
    assert policies["ffmpeg_threads_number"] == data["ffmpeg_threads_number"]
    assert policies["liveness"]["livenesses_weights"] == [0, 0.45, 0.5]
    # The seed's v2 stream holds only values v1 can carry: it comes back whole.
    expected = STREAM_DATA_V2.dump_python(STREAM_DATA_V2.validate_python(data), mode="json")
    assert v1_to_v2(v1_data, handler, policies) == expected


def test_seed_v2_create_shows_its_face_settings_in_v1(seed_example: Example) -> None:
    data = seed_example("v2_create_tcp")["data"]
    assert data["analytics"][0]["mode"] == 3
    v1_data, _, policies = v2_to_v1(data)
    assert v1_data["reference"] == "rtsp://some_stream_address"
    assert policies["filtering"]["min_body_size_threshold"] == 250
    assert policies["sending"]["delete_track_after_sending"] is True
    assert v2_surviving(v1_to_v2(*v2_to_v1(data))) == v2_surviving(data)


def test_videofile_has_no_live_source_fields() -> None:
    data = {"type": "videofile", "reference": "/v.mp4"}
    handler = {"bestshot_handler": {"handler_id": "557d54ec-29ad-4f3c-93b4-c9092ef12515"}}
    handler["authorization"] = {"account_id": "557d54ec-29ad-4f3c-93b4-c9092ef12515"}
    converted = v1_to_v2(data, handler, {})
    assert "endless" not in converted
    back, handler_back, _ = v2_to_v1(converted)
    assert back == stored_v1(data, handler, {})[0]
    assert handler_back["authorization"] == handler["authorization"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"mode": 2}, "bodies only"), ({"enabled": False}, "disabled")],
)
def test_v2_streams_v1_cannot_show(seed_example: Example, change: Settings, reason: str) -> None:
    data = seed_example("v2_stream_udp")["data"]
    data["analytics"][0] |= change
    with pytest.raises(NotConvertible, match=reason):
        v2_to_v1(data)


def test_only_the_first_analytics_item_is_shown_in_v1(seed_example: Example) -> None:
    data = seed_example("v2_stream_udp")["data"]
    second = copy.deepcopy(data["analytics"][0]) | {"mode": 2}
    data["analytics"].append(second)
    data["analytics"][0]["filtering"]["min_score_face"] = 0.9
    _, _, policies = v2_to_v1(data)
    assert policies["filtering"]["min_score"] == 0.9
    assert len(v1_to_v2(*v2_to_v1(data))["analytics"]) == 1


@HYPOTHESIS
@given(data=st.data())
def test_generated_v1_settings_survive_a_round_trip(v1_settings: Any, data: st.DataObject) -> None:
    settings_v1 = data.draw(v1_settings)
    converted = v1_to_v2(*settings_v1)
    STREAM_DATA_V2.validate_python(converted)
    assert v1_surviving(*v2_to_v1(converted)) == v1_surviving(*settings_v1)


@HYPOTHESIS
@given(data=st.data())
def test_generated_v2_data_survive_a_round_trip(
    convertible_v2_data: Any, data: st.DataObject
) -> None:
    original = data.draw(convertible_v2_data)
    shown = v2_to_v1(original)
    STREAM_DATA_V1.validate_python(shown[0])
    assert v2_surviving(v1_to_v2(*shown)) == v2_surviving(original)
