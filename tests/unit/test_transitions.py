"""The status machine's rules (:mod:`shared.domain.transitions`), pure, and that it is their
only home in the library."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.core.errors import BadStreamStatus, CannotCancelFinished, CannotStopInProgress
from shared.domain import transitions
from shared.domain.autorestart import fresh_state
from shared.domain.tokens import QueueToken, waiting_guard
from shared.store.changes import Change

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)
LIBRARY = Path(__file__).resolve().parents[2] / "shared"
MACHINE = LIBRARY / "domain" / "transitions.py"


def stream(**fields: Any) -> dict[str, Any]:
    return {
        "_id": "s1",
        "status": "pause",
        "version": 3,
        "queued_at": None,
        "claim": None,
        "groups": ["g1"],
        "data": {"type": "tcp"},
        "autorestart": fresh_state({"restart": 1, "attempt_count": 2, "delay": 5})
        | {"current_attempt": 1},
    } | fields


def test_entering_pending_queues_the_stream_afresh_without_a_claim() -> None:
    assert transitions.entering("pending", NOW) == {
        "status": "pending",
        "queued_at": NOW,
        "claim": None,
    }
    assert transitions.entering("in_progress", NOW)["claim"] == {
        "claimed_at": NOW,
        "last_feedback_at": None,
        "feedback_ids": [],
    }
    assert transitions.entering("pause", NOW) == {"status": "pause"}


@pytest.mark.parametrize(
    "transition",
    [
        lambda: transitions.patch(stream(), "pending", NOW),
        lambda: transitions.replace(stream(), "pending", NOW),
        lambda: transitions.handler_lost(
            stream(status="in_progress", claim={"claimed_at": EARLIER}), NOW
        ),
        lambda: transitions.restart(
            stream(status="failure", autorestart={"current_attempt": 0, "due_at": EARLIER}), NOW
        ),
    ],
    ids=["patch", "put", "handler_lost", "autorestart"],
)
def test_every_change_into_pending_is_guarded_by_the_groups_read(transition: Any) -> None:
    made = transition()
    assert made.path[-1] == "pending"
    assert made.set["queued_at"] == NOW and made.set["claim"] is None
    assert made.guard["groups"] == ["g1"]


def test_patch() -> None:
    back = transitions.patch(
        stream(status="in_progress", claim={"claimed_at": EARLIER}), "pending", NOW
    )
    assert back.path == ["restart", "pending"]
    assert back.guard == {"status": "in_progress", "version": 3, "groups": ["g1"]}
    assert back.set["autorestart"]["current_attempt"] == 0  # a client's restart resets them
    paused = transitions.patch(stream(status="in_progress"), "pause", NOW)
    assert paused.set == {"status": "pause", "claim": None}  # a client's change ends the claim
    assert transitions.patch(stream(), "pause", NOW).path == []
    assert transitions.patch(stream(), None, NOW).set == {}
    with pytest.raises(CannotStopInProgress):
        transitions.patch(stream(status="in_progress", data={"type": "videofile"}), "pause", NOW)
    with pytest.raises(CannotCancelFinished):
        transitions.patch(stream(status="done"), "cancel", NOW)
    with pytest.raises(BadStreamStatus):
        transitions.patch(stream(), "done", NOW)


def test_replace_starts_a_new_version_shown_afresh() -> None:
    put = transitions.replace(stream(status="failure", last_error="boom"), "pause", NOW)
    assert put.path == ["restart", "pause"] and put.version == 4
    assert put.guard == {"version": 3}
    assert put.set["status"] == "pause"
    assert {put.set[key] for key in ("last_error", "video_info", "preview", "queued_at")} == {None}


def test_claim_is_guarded_by_the_token_freshness_rule() -> None:
    waiting = stream(status="pending", queued_at=EARLIER)
    claimed = transitions.claim(waiting, NOW)
    assert claimed.guard == waiting_guard(3, EARLIER)
    token = QueueToken(stream_id="s1", version=3, queued_at=EARLIER + timedelta(microseconds=400))
    assert token.waited_by(waiting)  # what MongoDB gives back, to the millisecond
    assert not token.waited_by(waiting | {"version": 4})
    assert not token.waited_by(waiting | {"queued_at": NOW})
    assert not token.waited_by(waiting | {"status": "pause"})


def test_a_report_keeps_the_claim_and_a_failure_arms_autorestart() -> None:
    processing = stream(status="in_progress", claim={"claimed_at": EARLIER})
    done = transitions.report(processing, "done", None, "b:0", NOW)
    assert "claim" not in done.set and done.set["claim.last_feedback_at"] == NOW
    assert done.guard == {"version": 3, "status": "in_progress"}
    assert done.push is not None and done.push["claim.feedback_ids"]["$each"] == ["b:0"]
    failed = transitions.report(processing, "failure", "eof", "b:1", NOW)
    assert failed.set["autorestart.status"] == "in_progress"
    assert failed.set["autorestart.due_at"] == NOW + timedelta(seconds=5)


def test_attach_queues_a_group_token_for_a_pending_stream_only() -> None:
    pending = transitions.attach(stream(status="pending", queued_at=EARLIER), "g2", "two")
    assert pending.path == [] and pending.group_tokens == ["g2"]
    assert pending.guard == {
        "status": "pending",
        "version": 3,
        "queued_at": EARLIER,
        "groups": ["g1"],
    }
    assert transitions.attach(stream(), "g2", "two").group_tokens == []
    # the others join in one set-based write that no pending stream matches
    assert transitions.join_guard("g2") == {"groups": {"$ne": "g2"}, "status": {"$ne": "pending"}}


def test_no_module_but_the_machine_makes_a_transition_or_an_entering_effect() -> None:
    """Every other module asks the machine (a grep of the library, as a reviewer would)."""
    effects = re.compile(r"""["'](queued_at|claim)["']\s*:\s*(now\b|None\b)""")
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        if path == MACHINE:
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Transition":
                offenders.append(f"{path}:{node.lineno}: Transition(...)")
        offenders += [f"{path}: {m.group(0)}" for m in effects.finditer(text)]
    # a webhook delivery's lease is its own ``claim``, not a stream's
    offenders = [o for o in offenders if "webhooks/delivery.py" not in o]
    assert offenders == []


def test_a_change_names_its_stream_first() -> None:
    """The embedded server plans by a filter's first key it can serve from an index,
    whatever the hint: a claim whose filter began with its scope's ``status`` walked every
    pending stream's index entry (claims at a tenth of their pace)."""
    waiting = stream(status="pending", queued_at=EARLIER, account_id="a")
    change = Change(waiting, transitions.claim(waiting, NOW), NOW, scope={"status": "pending"})
    assert next(iter(change.filter())) == "_id"
