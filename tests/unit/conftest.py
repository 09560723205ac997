"""Seed examples and hypothesis strategies of valid request bodies, shared by the unit tests.

The strategies produce plain JSON-like dicts (as ``json.loads`` gives them), each optional
field present or absent, every value inside the published bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from shared.domain.models import INT32_MAX
from tests.no_rabbitmq import amqp_url, queue_worker  # noqa: F401 - refused here

SEED_EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "seed_examples"

Strategy = st.SearchStrategy[Any]


def load_example(name: str) -> Any:
    return json.loads((SEED_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def ints(low: int, high: int) -> Strategy:
    return st.integers(low, high)


def numbers(low: float, high: float) -> Strategy:
    """A JSON number: an int or a finite float."""
    return st.one_of(
        st.integers(math.ceil(low), math.floor(high)),
        st.floats(low, high, allow_nan=False, allow_infinity=False),
    )


def texts(max_size: int) -> Strategy:
    return st.text(max_size=max_size)


def optional(required: dict[str, Strategy], **maybe: Strategy) -> Strategy:
    return st.fixed_dictionaries(required, optional=maybe)


UUIDS = st.uuids().map(str)
REFERENCES = texts(512)
GROUP_NAMES = st.from_regex(r"[a-zA-Z0-9_\-]{1,128}", fullmatch=True)
BOOLS = st.booleans()

ROIS = st.one_of(
    optional(
        {
            "x": ints(0, 65536),
            "y": ints(0, 65536),
            "width": ints(0, 65536),
            "height": ints(0, 65536),
        },
        mode=st.just("abs"),
    ),
    optional(
        {
            "x": numbers(0, 100),
            "y": numbers(0, 100),
            "width": numbers(0, 100),
            "height": numbers(0, 100),
            "mode": st.just("percent"),
        }
    ),
)
AUTHORIZATIONS = st.one_of(
    optional({"token": texts(64)}),
    optional({"account_id": UUIDS}),
)
HANDLER_REFS = optional({"handler_id": UUIDS})

SOURCE_FIELDS: dict[str, Strategy] = {
    "roi": ROIS,
    "rotation": st.sampled_from([0, 90, 180, 270]),
}
LIVE_SOURCE_FIELDS: dict[str, Strategy] = {
    "preferred_program_stream_frame_width": ints(1, INT32_MAX),
    "endless": BOOLS,
}
DATA_POLICY_FIELDS: dict[str, Strategy] = {
    "frame_processing_mode": st.sampled_from(["auto", "full", "scale"]),
    "real_time_mode_fps": ints(0, 120),
    "ffmpeg_threads_number": ints(0, 64),
}
SENDING_PERIOD_FIELDS: dict[str, Strategy] = {
    "time_period_of_searching": numbers(-1, 1e6),
    "silent_period": numbers(-1, 1e6),
    "type": st.sampled_from(["sec", "frames"]),
}
PRIMARY_TRACK_POLICIES = optional(
    {},
    use_primary_track_policy=BOOLS,
    best_shot_min_size=ints(0, 4096),
    best_shot_proper_size=ints(0, 4096),
)
HEALTHCHECKS = optional(
    {},
    max_error_count=ints(0, INT32_MAX),
    period=ints(0, INT32_MAX),
    retry_delay=ints(0, INT32_MAX),
    timeout=ints(0, INT32_MAX),
)
FILTERING_FIELDS: dict[str, Strategy] = {
    "detection_yaw_threshold": numbers(0, 180),
    "detection_pitch_threshold": numbers(0, 180),
    "detection_roll_threshold": numbers(0, 180),
    "yaw_number": ints(1, 10),
    "yaw_collection_mode": BOOLS,
    "mouth_occlusion_threshold": numbers(0, 1),
    "min_body_size_threshold": numbers(0, 1e4),
}
LIVENESS_FIELDS: dict[str, Strategy] = {
    "use_mask_liveness_filtration": BOOLS,
    "use_flying_faces_liveness_filtration": BOOLS,
    "liveness_mode": st.sampled_from([0, 1, 2]),
    "number_of_liveness_checks": ints(0, 100),
    "liveness_threshold": numbers(0, 1),
    "mask_backgrounds_count": ints(0, 1000),
}
LOCATIONS = optional(
    {},
    city=texts(36),
    area=texts(36),
    district=texts(36),
    street=texts(36),
    house_number=texts(36),
    geo_position=optional({"longitude": numbers(-180, 180), "latitude": numbers(-90, 90)}),
)
AUTORESTARTS = optional(
    {}, restart=st.sampled_from([0, 1]), attempt_count=ints(1, 100), delay=ints(1, 600)
)
COMMON_CREATE_FIELDS: dict[str, Strategy] = {
    "name": texts(128),
    "description": texts(512),
    "location": LOCATIONS,
    "autorestart": AUTORESTARTS,
    "status": st.sampled_from(["pending", "pause"]),
    "group_name": GROUP_NAMES,
}


def _stream_data(extra: dict[str, Strategy], required: dict[str, Strategy]) -> Strategy:
    """The four source types; ``extra`` holds the version's own optional data fields."""
    source = SOURCE_FIELDS | extra
    live = source | LIVE_SOURCE_FIELDS
    return st.one_of(
        optional({"type": st.just("tcp"), "reference": REFERENCES} | required, **live),
        optional({"type": st.just("udp")} | required, reference=REFERENCES, **live),
        optional({"type": st.just("videofile"), "reference": REFERENCES} | required, **source),
        optional({"type": st.just("images"), "reference": REFERENCES} | required, **source),
    )


# --- v1 --------------------------------------------------------------------------------

DATA_V1 = _stream_data({"droi": ROIS}, {})
EVENT_HANDLERS_V1 = optional(
    {"bestshot_handler": HANDLER_REFS, "authorization": AUTHORIZATIONS},
    origin=texts(64),
    api_version=ints(1, 10),
    detection_handler=HANDLER_REFS,
    frame_store=texts(64),
)
POLICIES_V1 = optional(
    {},
    sending=optional(
        {},
        **SENDING_PERIOD_FIELDS,
        number_of_bestshots_to_send=ints(0, 100),
        send_only_full_set=BOOLS,
        delete_track_after_sending=BOOLS,
    ),
    primary_track_policy=PRIMARY_TRACK_POLICIES,
    liveness=optional(
        {},
        **LIVENESS_FIELDS,
        use_shoulders_liveness_filtration=BOOLS,
        livenesses_weights=st.lists(numbers(0, 1), min_size=3, max_size=3),
    ),
    filtering=optional({}, **FILTERING_FIELDS, min_score=numbers(0, 1)),
    **DATA_POLICY_FIELDS,
    healthcheck=HEALTHCHECKS,
)
CREATE_V1 = optional(
    {"account_id": UUIDS, "data": DATA_V1, "event_handler": EVENT_HANDLERS_V1},
    policies=POLICIES_V1,
    **COMMON_CREATE_FIELDS,
)

# --- v2 --------------------------------------------------------------------------------


def analytics_v2(modes: list[int], enabled: Strategy = BOOLS) -> Strategy:
    return optional(
        {
            "event_handler": optional(
                {"handler_id": UUIDS, "authorization": AUTHORIZATIONS},
                type=st.just("luna_handler"),
            )
        },
        mode=st.sampled_from(modes),
        enabled=enabled,
        droi=ROIS,
        filtering=optional(
            {}, **FILTERING_FIELDS, min_score_face=numbers(0, 1), min_score_body=numbers(0, 1)
        ),
        liveness=optional(
            {},
            **LIVENESS_FIELDS,
            livenesses_weights=st.lists(numbers(0, 1), min_size=2, max_size=2),
        ),
        primary_track_policy=PRIMARY_TRACK_POLICIES,
        sending=optional(
            {},
            **SENDING_PERIOD_FIELDS,
            full_frame_settings=ints(0, 10),
            bestshot_settings=optional(
                {},
                type=ints(0, 10),
                face_bestshots_to_send=ints(0, 100),
                body_bestshots_to_send=ints(0, 100),
            ),
            body=optional({}, send_only_full_set=BOOLS, delete_track_after_sending=BOOLS),
        ),
        healthcheck=HEALTHCHECKS,
    )


def data_v2(first: Strategy) -> Strategy:
    """v2 data whose first analytics item comes from ``first``, then up to two others."""
    items = st.tuples(first, st.lists(analytics_v2([1, 2, 3]), max_size=2)).map(
        lambda pair: [pair[0], *pair[1]]
    )
    return _stream_data(DATA_POLICY_FIELDS, {"analytics": items})


DATA_V2 = data_v2(analytics_v2([1, 2, 3]))
CONVERTIBLE_DATA_V2 = data_v2(analytics_v2([1, 3], enabled=st.just(True)))
CREATE_V2 = optional({"account_id": UUIDS, "data": DATA_V2}, **COMMON_CREATE_FIELDS)


@pytest.fixture(scope="session")
def seed_example() -> Callable[[str], Any]:
    """Loads ``tests/fixtures/seed_examples/<name>.json``; a fresh object every call."""
    return load_example


@pytest.fixture(scope="session")
def create_v1_bodies() -> Strategy:
    return CREATE_V1


@pytest.fixture(scope="session")
def create_v2_bodies() -> Strategy:
    return CREATE_V2


@pytest.fixture(scope="session")
def v1_settings() -> Strategy:
    """Stored v1 settings: ``(data, event_handler, policies)``."""
    return st.tuples(DATA_V1, EVENT_HANDLERS_V1, POLICIES_V1)


@pytest.fixture(scope="session")
def convertible_v2_data() -> Strategy:
    return CONVERTIBLE_DATA_V2
