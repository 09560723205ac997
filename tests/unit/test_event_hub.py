"""The hub's bookkeeping without a database: resume points, history, bounded subscribers."""

from __future__ import annotations

from typing import Any

import pytest

from shared.services.event_hub import StreamEventHub, Subscription
from shared.services.events import EventFilter, StreamEvent


def event(n: int, account: str = "a") -> StreamEvent:
    return StreamEvent(f"e{n}", "changed", f"s{n}", account, ("status",), None, None)


def hub(**options: Any) -> StreamEventHub:
    return StreamEventHub(None, **options)  # type: ignore[arg-type]  # no database needed


def test_resume_points_follow_the_history() -> None:
    events = hub(history_size=3)
    events._note_position({"_data": "00"})
    for n in (1, 2):
        events._publish(event(n))
    for quiet in ("a1", "a2", "a3"):  # an idle stream: a new token every batch
        events._note_position({"_data": quiet})
    assert list(events._points) == ["00", "e1", "e2", "a3"]
    for n in (3, 4):
        events._publish(event(n))
    # the history keeps e2..e4: a point from before e1 cannot be served from it any more
    assert "00" not in events._points
    assert [e.event_id for e in events._after(events._points["e1"])] == ["e2", "e3", "e4"]
    assert [e.event_id for e in events._after(events._points["a3"])] == ["e3", "e4"]
    assert events._position == "e4"


def test_a_subscriber_that_falls_behind_is_dropped_and_freed() -> None:
    events = hub(buffer_size=2)
    events._note_position({"_data": "00"})
    closed: list[bool] = []
    slow = Subscription(events, EventFilter(), "00")
    slow.on_overflow = lambda: closed.append(True)
    slow.join([])
    other = Subscription(events, EventFilter(account_id="b"), "00")
    other.join([])
    for n in (1, 2):
        events._publish(event(n))
    assert (slow.queued, slow.dropped, closed) == (2, False, [])
    events._publish(event(3))
    assert (slow.queued, slow.dropped, closed) == (0, True, [True])
    assert slow not in events.live
    assert other.queued == 0 and not other.dropped  # another account's events: none queued


@pytest.mark.parametrize("account", ["a", "b"])
def test_replayed_history_does_not_count_against_the_buffer(account: str) -> None:
    events = hub(buffer_size=1, history_size=10)
    events._note_position({"_data": "00"})
    for n in range(5):
        events._publish(event(n, account="a"))
    resumed = Subscription(events, EventFilter(account_id=account), "e0")
    resumed.join(events._after(events._points["e0"]))
    events._publish(event(9, account=account))
    assert not resumed.dropped
    assert resumed.queued == 1
    assert len(resumed._items) == (5 if account == "a" else 1)
