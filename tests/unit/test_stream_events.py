"""Event shaping without a database: which updates are events, ids, the SSE framing."""

from __future__ import annotations

import pytest

from shared.core.errors import BadEventId
from shared.services.events import (
    EventFilter,
    StreamEvent,
    event_id,
    resume_token,
    sse_frame,
    visible_changes,
)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ({"updatedFields": {"status": "pause", "outbox": []}}, ("status",)),
        ({"updatedFields": {"claim.last_feedback_at": 1, "queued_at": None}}, ()),
        ({"updatedFields": {"autorestart.due_at": 1}}, ()),
        ({"updatedFields": {"autorestart": {"due_at": 1}}}, ()),  # nested, as SecantusDB says
        ({"updatedFields": {"autorestart.current_attempt": 2}}, ("autorestart",)),
        ({"updatedFields": {"autorestart": {"restart": 1, "due_at": 1}}}, ("autorestart",)),
        ({"updatedFields": {"groups": ["g"], "group_names": ["n"]}}, ("group_names",)),
        ({"updatedFields": {}, "removedFields": ["preview"]}, ("preview",)),
        ({"updatedFields": {"video_info": {}, "version": 2}}, ("video_info", "version")),
    ],
)
def test_visible_changes(description: dict[str, object], expected: tuple[str, ...]) -> None:
    assert visible_changes(description) == expected


def test_event_ids_round_trip() -> None:
    plain = {"_data": "82abcdef"}
    assert event_id(plain) == "82abcdef"
    assert resume_token("82abcdef") == plain
    typed = {"_data": "82ab", "_typeBits": b"\x01"}
    text = event_id(typed)
    assert text.startswith("x")
    assert resume_token(text) == typed


@pytest.mark.parametrize("text", ["", "zz", "x00", "a" * 4097])
def test_bad_event_ids(text: str) -> None:
    with pytest.raises(BadEventId):
        resume_token(text)


def test_sse_frame_puts_the_id_last() -> None:
    frame = sse_frame("changed", "a\nb", "ff")
    assert frame == b"event: changed\ndata: a\ndata: b\nid: ff\n\n"


def test_filter() -> None:
    event = StreamEvent("1", "created", "s1", "acc", (), None, None)
    assert EventFilter().matches(event)
    assert EventFilter(account_id="acc", stream_ids=frozenset({"s1"})).matches(event)
    assert not EventFilter(account_id="other").matches(event)
    assert not EventFilter(stream_ids=frozenset({"s2"})).matches(event)
