"""Request models: seed examples, defaults, bounds, strictness and LUNA error wording."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from gateway.responses import AutorestartView, StreamV1
from shared.domain import statuses
from shared.domain.filters import (
    QueryUUID,
    StreamFiltersV2,
    StreamListQueryV1,
    StreamListQueryV2,
)
from shared.domain.models import (
    INT32_MAX,
    STREAM_STATUSES_CREATE,
    STREAM_STATUSES_PATCH,
    UUID_PATTERN,
    FeedbackItem,
    FeedbackRequest,
    GroupCreate,
    GroupPatch,
    LinkerRequest,
    PoliciesV1,
    QueueClaimRequest,
    StreamCreateV1,
    StreamCreateV2,
    StreamPatch,
    StreamsDeleteRequest,
    format_validation_error,
)
from shared.domain.models.common import QueryTime, UUIDStr
from shared.services.logs import DeleteLogsQuery, LogFilters, LogsQuery
from tests.integration.factories import V1_SENDING_DEFAULTS

Example = Callable[[str], Any]
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
HANDLER = {"bestshot_handler": {"handler_id": ACCOUNT}, "authorization": {"token": "t"}}
MINIMAL_V1 = {
    "account_id": ACCOUNT,
    "data": {"type": "tcp", "reference": "rtsp://cam"},
    "event_handler": HANDLER,
}
MINIMAL_V2 = {
    "account_id": ACCOUNT,
    "data": {
        "type": "videofile",
        "reference": "/video.mp4",
        "analytics": [{"event_handler": {"handler_id": ACCOUNT, "authorization": {"token": "t"}}}],
    },
}

SEED_REQUESTS: list[tuple[str, type[BaseModel]]] = [
    ("v1_create_tcp", StreamCreateV1),
    ("v1_put_udp", StreamCreateV1),
    ("v1_patch", StreamPatch),
    ("v1_delete_streams", StreamsDeleteRequest),
    ("v1_queue_claim", QueueClaimRequest),
    ("v1_feedback", FeedbackRequest),
    ("v2_create_tcp", StreamCreateV2),
    ("v2_put_udp", StreamCreateV2),
    ("group_create", GroupCreate),
    ("group_patch", GroupPatch),
    ("linker", LinkerRequest),
]


def set_path(body: Any, path: str, value: Any) -> Any:
    """A copy of ``body`` with ``value`` at dotted ``path``; missing objects are created."""
    result = copy.deepcopy(body)
    node = result
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def assert_subset(given: Any, stored: Any) -> None:
    """Every given value is kept as given, same JSON kind (40 stays 40, 0.5 stays 0.5)."""
    if isinstance(given, dict):
        assert isinstance(stored, dict)
        for key, value in given.items():
            assert key in stored
            assert_subset(value, stored[key])
    elif isinstance(given, list):
        assert isinstance(stored, list)
        assert len(given) == len(stored)
        for left, right in zip(given, stored, strict=True):
            assert_subset(left, right)
    else:
        assert type(given) is type(stored)
        assert given == stored


def refusal(model: type[BaseModel], body: Any) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return format_validation_error(caught.value)


def round_trip(model: type[BaseModel], body: Any) -> dict[str, Any]:
    dumped = model.model_validate(body).model_dump(mode="json")
    assert model.model_validate(dumped).model_dump(mode="json") == dumped
    assert_subset(body, dumped)
    return dumped


@pytest.mark.parametrize(("name", "model"), SEED_REQUESTS)
def test_seed_request_example_validates_and_round_trips(
    seed_example: Example, name: str, model: type[BaseModel]
) -> None:
    round_trip(model, seed_example(name))


def test_minimal_v1_create_gets_every_default() -> None:
    dumped = round_trip(StreamCreateV1, MINIMAL_V1)
    full_frame = {"x": 0, "y": 0, "width": 0, "height": 0, "mode": "abs"}
    assert dumped["data"] == {
        "type": "tcp",
        "reference": "rtsp://cam",
        "roi": full_frame,
        "droi": full_frame,
        "rotation": 0,
        "preferred_program_stream_frame_width": 800,
        "endless": True,
    }
    assert dumped["policies"] == PoliciesV1().model_dump(mode="json")
    assert dumped["policies"]["sending"] == V1_SENDING_DEFAULTS
    assert dumped["policies"]["frame_processing_mode"] == "auto"
    assert dumped["policies"]["healthcheck"]["timeout"] == INT32_MAX
    assert dumped["event_handler"]["api_version"] == 6
    assert dumped["autorestart"] == {"restart": 0, "attempt_count": 10, "delay": 60}
    assert dumped["location"]["geo_position"] is None
    assert (dumped["name"], dumped["description"], dumped["status"]) == ("", "", "pending")
    assert dumped["group_name"] is None


def test_minimal_v2_create_fills_the_analytics_item() -> None:
    dumped = round_trip(StreamCreateV2, MINIMAL_V2)
    data = dumped["data"]
    assert "endless" not in data
    assert "preferred_program_stream_frame_width" not in data
    assert data["frame_processing_mode"] == "auto"
    item = data["analytics"][0]
    assert (item["mode"], item["enabled"]) == (1, True)
    assert item["event_handler"]["type"] == "luna_handler"
    assert item["sending"]["bestshot_settings"] == {
        "type": 1,
        "face_bestshots_to_send": 1,
        "body_bestshots_to_send": 1,
    }
    assert item["liveness"]["livenesses_weights"] == [0.45, 0.5]
    assert item["filtering"]["min_score_face"] == 0.5187


def test_numbers_keep_their_json_kind() -> None:
    body = set_path(
        MINIMAL_V1, "policies.filtering", {"min_score": 1, "min_body_size_threshold": 2.5}
    )
    dumped = StreamCreateV1.model_validate(body).model_dump(mode="json")
    assert type(dumped["policies"]["filtering"]["min_score"]) is int
    assert dumped["policies"]["filtering"]["min_body_size_threshold"] == 2.5


def test_status_is_left_to_the_service() -> None:
    """A status outside the enum is 39002, the service's own check, not a schema error."""
    assert StreamCreateV1.model_validate({**MINIMAL_V1, "status": "done"}).status == "done"
    assert StreamCreateV1.ALLOWED_STATUSES == STREAM_STATUSES_CREATE == ("pending", "pause")
    assert StreamPatch.model_validate({"status": "nope"}).status == "nope"
    assert StreamPatch.ALLOWED_STATUSES == STREAM_STATUSES_PATCH


class R(NamedTuple):
    """A refused body: ``value`` put at ``where`` gives ``message`` at ``path`` (or ``where``)."""

    where: str
    value: Any
    message: str
    path: str | None = None

    @property
    def expected(self) -> tuple[str, str]:
        return (self.where if self.path is None else self.path, self.message)


def extra(name: str) -> str:
    return f"Additional properties are not allowed ({name!r} was unexpected)"


V1_REFUSALS = [
    R("faces", 1, extra("faces"), path=""),
    R("account_id", "ABC", f"'ABC' does not match {UUID_PATTERN!r}"),
    R("name", "n" * 129, f"{'n' * 129!r} is too long"),
    R("description", 5, "5 is not of type 'string'"),
    R("data.type", "rtmp", "'rtmp' is not one of ['tcp', 'udp', 'videofile', 'images']"),
    R("data.rotation", 45, "45 is not one of [0, 90, 180, 270]"),
    R("data.rotation", False, "False is not of type 'integer'"),
    R("data.roi.x", -1, "-1 is less than the minimum of 0"),
    R("data.roi.mode", "px", "'px' is not one of ['abs', 'percent']"),
    R("data.roi", "all", "'all' is not of type 'object'"),
    R("data.endless", "yes", "'yes' is not of type 'boolean'"),
    R("data.reference", "r" * 513, f"{'r' * 513!r} is too long"),
    R("event_handler.bestshot_handler", {}, "'handler_id' is a required property"),
    R("event_handler.authorization", {}, "'token' is a required property"),
    R("event_handler.authorization.token", 1, "1 is not of type 'string'"),
    R("event_handler.api_version", "6", "'6' is not of type 'integer'"),
    R("policies.sending.type", "min", "'min' is not one of ['sec', 'frames']"),
    R("policies.sending.silent_period", -2, "-2 is less than the minimum of -1"),
    R("policies.sending.silent_period", True, "True is not of type 'number'"),
    R("policies.filtering.min_score", 1.5, "1.5 is greater than the maximum of 1"),
    R("policies.filtering.detection_yaw_threshold", "40", "'40' is not of type 'number'"),
    R("policies.filtering.faces", 1, extra("faces"), path="policies.filtering"),
    R("policies.liveness.livenesses_weights", [0.5, 0.5], "[0.5, 0.5] is too short"),
    R("policies.liveness.livenesses_weights", [0, 0, 0, 0], "[0, 0, 0, 0] is too long"),
    R(
        "policies.liveness.livenesses_weights",
        [0, 2, 0],
        "2 is greater than the maximum of 1",
        path="policies.liveness.livenesses_weights.1",
    ),
    R("policies.liveness.liveness_mode", True, "True is not of type 'integer'"),
    R("policies.frame_processing_mode", "fast", "'fast' is not one of ['auto', 'full', 'scale']"),
    R("policies.real_time_mode_fps", 1.0, "1.0 is not of type 'integer'"),
    R(
        "policies.filtering.min_body_size_threshold",
        10**30,
        f"{10**30} is greater than the maximum of {INT32_MAX}",
    ),
    R(
        "policies.healthcheck.timeout",
        INT32_MAX + 1,
        f"{INT32_MAX + 1} is greater than the maximum of {INT32_MAX}",
    ),
    R("location.city", "c" * 37, f"{'c' * 37!r} is too long"),
    R("location.geo_position.longitude", 181, "181 is greater than the maximum of 180"),
    R("location.geo_position", {"latitude": 0}, "'longitude' is a required property"),
    R(
        "location.geo_position",
        {"longitude": 0, "latitude": -91},
        "-91 is less than the minimum of -90",
        path="location.geo_position.latitude",
    ),
    R("autorestart.restart", True, "True is not of type 'integer'"),
    R("autorestart.restart", 2, "2 is not one of [0, 1]"),
    R("autorestart.delay", 0, "0 is less than the minimum of 1"),
    R("autorestart.attempt_count", 101, "101 is greater than the maximum of 100"),
    R("group_name", "bad name", "'bad name' does not match '^[a-zA-Z0-9_\\\\-]{1,128}$'"),
    R("status", 1, "1 is not of type 'string'"),
]


@pytest.mark.parametrize("case", V1_REFUSALS, ids=lambda case: case.where)
def test_v1_create_refuses(case: R) -> None:
    assert refusal(StreamCreateV1, set_path(MINIMAL_V1, case.where, case.value)) == case.expected


A = "data.analytics.0."
V2_REFUSALS = [
    R("event_handler", HANDLER, extra("event_handler"), path=""),
    R("data.analytics", [], "[] should be non-empty"),
    R("data.endless", True, extra("endless"), path="data"),
    R("data.droi", {"x": 0, "y": 0, "width": 0, "height": 0}, extra("droi"), path="data"),
    R(A + "mode", 4, "4 is not one of [1, 2, 3]"),
    R(A + "enabled", 1, "1 is not of type 'boolean'"),
    R(
        A + "droi",
        {"x": 0, "y": 0, "width": 101, "height": 0, "mode": "percent"},
        "101 is greater than the maximum of 100",
        path=A + "droi.width",
    ),
    R(A + "droi.mode", "pixels", "'pixels' is not one of ['abs', 'percent']"),
    R(A + "event_handler.type", "http", "'http' is not one of ['luna_handler']"),
    R(
        A + "event_handler.authorization",
        {"account_id": "x"},
        f"'x' does not match {UUID_PATTERN!r}",
        path=A + "event_handler.authorization.account_id",
    ),
    R(A + "filtering.min_score", 0.5, extra("min_score"), path=A + "filtering"),
    R(A + "sending.bestshot_settings.type", -1, "-1 is less than the minimum of 0"),
    R(A + "liveness.livenesses_weights", [0.1, 0.2, 0.3], "[0.1, 0.2, 0.3] is too long"),
    R(A + "sending.body.send_only_full_set", "true", "'true' is not of type 'boolean'"),
    R(A + "healthcheck.period", -1, "-1 is less than the minimum of 0"),
]


@pytest.mark.parametrize("case", V2_REFUSALS, ids=lambda case: case.where)
def test_v2_create_refuses(case: R) -> None:
    assert refusal(StreamCreateV2, set_path(MINIMAL_V2, case.where, case.value)) == case.expected


def test_request_models_have_a_json_schema() -> None:
    """The gateway builds its OpenAPI document from these models."""
    models = [model for _, model in SEED_REQUESTS]
    _, schema = models_json_schema([(model, "validation") for model in models])
    roi = schema["$defs"]["RoiPercent"]["properties"]["x"]
    assert (roi["minimum"], roi["maximum"]) == (0, 100)
    status = schema["$defs"]["StreamCreateV1"]["properties"]["status"]
    assert status["enum"] == ["pending", "pause"]


def test_source_types_take_only_their_fields() -> None:
    videofile = {**MINIMAL_V1, "data": {"type": "videofile", "reference": "f", "endless": True}}
    assert refusal(StreamCreateV1, videofile) == (
        "data",
        "Additional properties are not allowed ('endless' was unexpected)",
    )
    tcp = {**MINIMAL_V1, "data": {"type": "tcp"}}
    assert refusal(StreamCreateV1, tcp) == ("data", "'reference' is a required property")
    udp = StreamCreateV1.model_validate({**MINIMAL_V1, "data": {"type": "udp"}})
    assert udp.data.reference is None


def test_unknown_fields_are_reported_together() -> None:
    body = {**MINIMAL_V1, "zeta": 1, "alpha": 2}
    assert refusal(StreamCreateV1, body) == (
        "",
        "Additional properties are not allowed ('alpha', 'zeta' were unexpected)",
    )


def test_missing_required_fields() -> None:
    assert refusal(StreamCreateV1, {"data": MINIMAL_V1["data"], "event_handler": HANDLER}) == (
        "",
        "'account_id' is a required property",
    )
    assert refusal(StreamCreateV1, {**MINIMAL_V1, "data": {"reference": "x"}}) == (
        "data",
        "'type' is a required property",
    )


def test_patch_needs_a_field() -> None:
    message = ("", "at least one field must have a value")
    assert refusal(StreamPatch, {}) == message
    assert refusal(StreamPatch, {"description": None}) == message
    assert refusal(StreamPatch, {"description": "d" * 129}) == (
        "description",
        f"{'d' * 129!r} is too long",
    )
    assert StreamPatch.model_validate({"description": ""}).description == ""


FEEDBACK_REFUSALS = [
    R("streams.0.status", "pause", "'pause' is not one of ['in_progress', 'done', 'failure']"),
    R("streams.0.version", 0, "0 is less than the minimum of 1"),
    R("streams.0.stream_id", "1", f"'1' does not match {UUID_PATTERN!r}"),
    R("streams.0.error", 1, "1 is not of type 'string'"),
    R("streams.0.video_info.width", -1, "-1 is less than the minimum of 0"),
    R("streams.0.video_info.start_time", "yesterday", "'yesterday' is not a 'date-time'"),
    R("streams.0.video_info.progress", 1.5, "1.5 is greater than the maximum of 1"),
    R(
        "streams.0.preview.live",
        {"url": "u", "link": "x"},
        "Additional properties are not allowed ('link' was unexpected)",
    ),
    R("streams", {}, "{} is not of type 'array'"),
    R("streams.0.error", "e" * 4097, f"'{'e' * 60}... is too long (4097 characters, at most 4096)"),
    R(
        "streams.0.preview.last_frame.url",
        "u" * 2049,
        f"'{'u' * 60}... is too long (2049 characters, at most 2048)",
    ),
    R(
        "streams.0.video_info.start_time",
        "2024-03-01T10:00:00." + "0" * 44 + "Z",
        f"'2024-03-01T10:00:00.{'0' * 44}Z' is too long",
    ),
]


@pytest.mark.parametrize("case", FEEDBACK_REFUSALS, ids=lambda case: case.where)
def test_feedback_refuses(seed_example: Example, case: R) -> None:
    body = set_path(seed_example("v1_feedback"), case.where, case.value)
    assert refusal(FeedbackRequest, body) == case.expected


def test_feedback_batch_size(seed_example: Example) -> None:
    item = seed_example("v1_feedback")["streams"][0]
    assert len(FeedbackRequest.model_validate({"streams": [item] * 1000}).streams) == 1000
    path, message = refusal(FeedbackRequest, {"streams": [item] * 1001})
    assert path == "streams"
    assert message.endswith("... is too long (1001 items, at most 1000)"), message
    assert len(message) < 200


def test_feedback_optional_fields(seed_example: Example) -> None:
    item = {"stream_id": ACCOUNT, "status": "done", "version": 3}
    dumped = round_trip(FeedbackRequest, {"streams": [item]})
    assert dumped["streams"][0] == {**item, "error": None, "video_info": None, "preview": None}
    body = seed_example("v1_feedback")
    info = body["streams"][0]["video_info"]
    del info["duration"], info["progress"]
    assert round_trip(FeedbackRequest, body)["streams"][0]["video_info"]["progress"] is None
    body["streams"][0]["preview"] = {"live": {"url": "http://agent:34569/preview"}}
    assert round_trip(FeedbackRequest, body)["streams"][0]["preview"]["last_frame"] is None


def test_queue_claim_and_linker_bounds(seed_example: Example) -> None:
    assert refusal(QueueClaimRequest, {"limit": 1}) == ("", "'filters' is a required property")
    assert refusal(QueueClaimRequest, {"filters": {}, "limit": 0}) == (
        "limit",
        "0 is less than the minimum of 1",
    )
    round_trip(QueueClaimRequest, {"filters": {}, "limit": 5})
    linker = seed_example("linker")
    assert refusal(LinkerRequest, {**linker, "stream_ids": [ACCOUNT] * 1001})[0] == "stream_ids"
    assert refusal(LinkerRequest, {**linker, "action": "move"}) == (
        "action",
        "'move' is not one of ['attach', 'detach']",
    )
    round_trip(LinkerRequest, {**linker, "stream_ids": [ACCOUNT] * 1000})
    round_trip(StreamsDeleteRequest, {"stream_ids": None, "names": None})
    assert refusal(StreamsDeleteRequest, {"names": ["n" * 129]})[0] == "names.0"


def test_group_bodies() -> None:
    assert refusal(GroupCreate, {"account_id": ACCOUNT}) == (
        "",
        "'group_name' is a required property",
    )
    assert refusal(GroupPatch, {}) == ("", "'description' is a required property")
    assert refusal(GroupPatch, {"description": "d" * 257})[0] == "description"
    group = round_trip(GroupCreate, {"account_id": ACCOUNT, "group_name": "g-1_A"})
    assert group["description"] == ""


@HYPOTHESIS
@given(data=st.data())
def test_generated_v1_bodies_round_trip(create_v1_bodies: Any, data: st.DataObject) -> None:
    round_trip(StreamCreateV1, data.draw(create_v1_bodies))


@HYPOTHESIS
@given(data=st.data())
def test_generated_v2_bodies_round_trip(create_v2_bodies: Any, data: st.DataObject) -> None:
    round_trip(StreamCreateV2, data.draw(create_v2_bodies))


# Mutations that break one bound of any valid body (intermediate objects get created);
# left out: ``endless``, a field of live sources only.
V1_MUTATIONS = [case for case in V1_REFUSALS if case.where != "data.endless"]
V2_MUTATIONS = [case for case in V2_REFUSALS if case.where != "data.endless"]


@HYPOTHESIS
@given(data=st.data(), case=st.sampled_from(V1_MUTATIONS))
def test_generated_v1_bodies_with_a_broken_bound_are_refused(
    create_v1_bodies: Any, data: st.DataObject, case: R
) -> None:
    body = set_path(data.draw(create_v1_bodies), case.where, case.value)
    assert refusal(StreamCreateV1, body) == case.expected


@HYPOTHESIS
@given(data=st.data(), case=st.sampled_from(V2_MUTATIONS))
def test_generated_v2_bodies_with_a_broken_bound_are_refused(
    create_v2_bodies: Any, data: st.DataObject, case: R
) -> None:
    body = set_path(data.draw(create_v2_bodies), case.where, case.value)
    assert refusal(StreamCreateV2, body) == case.expected


# --- one home for statuses, the uuid pattern and the time type --------------------------


def test_status_types_are_the_status_sets() -> None:
    """Every status type is the one of ``shared.domain.statuses``, member for member, in order."""
    assert get_args(StreamV1.model_fields["status"].annotation) == statuses.STORED
    assert get_args(AutorestartView.model_fields["status"].annotation) == (
        statuses.AUTORESTART_STATUSES
    )
    assert get_args(FeedbackItem.model_fields["status"].annotation) == statuses.FEEDBACK_STATUSES
    for model in (StreamFiltersV2, LogFilters):
        (item,) = get_args(get_args(model.model_fields["statuses"].annotation)[0])
        assert get_args(item) == statuses.LOGGED
    assert STREAM_STATUSES_CREATE is statuses.CREATE_STATUSES
    assert STREAM_STATUSES_PATCH is statuses.PATCH_STATUSES


def test_stream_and_log_filters_share_the_uuid_and_time_types() -> None:
    assert QueryUUID is UUIDStr
    streams, logs = StreamFiltersV2.model_fields, LogFilters.model_fields
    for fields in (streams, logs):
        assert fields["account_id"].annotation == UUIDStr | None
        assert fields["stream_ids"].annotation == list[UUIDStr] | None
    for field in (
        streams["create_time__gte"],
        streams["create_time__lt"],
        logs["log_time__gte"],
        logs["log_time__lt"],
        DeleteLogsQuery.model_fields["log_time__lt"],
    ):
        assert field.annotation == QueryTime | None


@pytest.mark.parametrize(
    "value",
    ["1700000000", "0", "1700000000.5", "-1", "2024-01-01T00:00:00", "2024-01-01T00:00Z"],
)
def test_a_bare_number_is_not_a_query_time(value: str) -> None:
    """The reference's time filters are ``string <date-time>`` in RFC 3339 format: a unix
    timestamp is refused by the stream filters and the log filters alike."""
    for model, name in (
        (StreamListQueryV1, "create_time__gte"),
        (StreamListQueryV2, "create_time__lt"),
        (LogsQuery, "log_time__gte"),
        (LogsQuery, "log_time__lt"),
        (DeleteLogsQuery, "log_time__lt"),
    ):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({name: value})
        assert caught.value.errors()[0]["loc"] == (name,)


def test_query_time_accepts_rfc3339_in_utc() -> None:
    moment = datetime(2021, 9, 21, 11, 11, 41, 674000, tzinfo=UTC)
    for value in ("2021-09-21T11:11:41.674Z", "2021-09-21T14:11:41.674+03:00"):
        assert StreamListQueryV2.model_validate({"create_time__gte": value}).create_time__gte == (
            moment
        )
        assert LogsQuery.model_validate({"log_time__gte": value}).log_time__gte == moment
