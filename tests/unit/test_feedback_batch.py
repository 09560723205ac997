"""The feedback message between gateway and queue worker keeps the wire format in flight
before it, both ways: a rolling upgrade mixes old and new gateways and workers."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.domain.feedback_batch import (
    FeedbackBatch,
    FeedbackEntry,
    FeedbackOutcome,
    FeedbackReply,
)
from shared.domain.models import FeedbackRequest

STREAM = "00000000-0000-4000-8000-000000000000"
ITEM = {
    "stream_id": STREAM,
    "status": "in_progress",
    "version": 3,
    "error": None,
    "video_info": None,
    "preview": {"live": None, "last_frame": {"url": "http://agent:34569/frame"}},
}


def test_an_older_gateways_batch_is_taken_as_it_was() -> None:
    """What a gateway published before: the agent's items, dumped one by one."""
    body = json.dumps({"streams": [ITEM, {**ITEM, "status": "done"}]}).encode()
    batch = FeedbackBatch.model_validate_json(body).delivered(
        "batch-1", redelivered=True, received_at=1700000000
    )
    assert (batch.batch_id, batch.redelivered, batch.received_at) == ("batch-1", True, 1.7e9)
    assert [item.status for item in batch.streams] == ["in_progress", "done"]
    assert batch.streams[0].preview is not None
    assert batch.streams[0].preview.last_frame is not None


def test_a_batch_travels_as_the_agents_items_only() -> None:
    """An older worker validates the body with the API's model, which refuses any field
    it does not know: what travels beside the body is not in it."""
    request = FeedbackRequest.model_validate({"streams": [ITEM]})
    batch = FeedbackBatch(batch_id="b", streams=request.streams, received_at=1.5)
    body = batch.model_dump_json()
    assert json.loads(body) == {"streams": [ITEM]}
    assert FeedbackRequest.model_validate_json(body) == request
    assert FeedbackBatch.model_validate_json(body).streams == request.streams


@pytest.mark.parametrize("header", [None, "soon", True, [1]])
def test_a_received_at_header_that_is_no_time_is_left_out(header: object) -> None:
    batch = FeedbackBatch(streams=[]).delivered("b", redelivered=False, received_at=header)
    assert batch.received_at is None


def test_a_batch_has_an_id_of_its_own() -> None:
    assert FeedbackBatch(streams=[]).batch_id != FeedbackBatch(streams=[]).batch_id


def test_replies_are_what_they_were() -> None:
    entry = FeedbackEntry(stream_id=STREAM, status="done", version=3)
    reply = FeedbackReply(streams=FeedbackOutcome(modified=[entry]))
    assert json.loads(reply.body()) == {
        "streams": {
            "modified": [{"stream_id": STREAM, "status": "done", "version": 3}],
            "unmodified": [],
        }
    }
    assert json.loads(FeedbackReply(error="malformed feedback batch").body()) == {
        "error": "malformed feedback batch"
    }
    # an older worker's replies, as it sent them
    assert FeedbackReply.model_validate_json(reply.body()) == reply
    assert FeedbackReply.model_validate_json(b'{"error": "x"}').error == "x"


@pytest.mark.parametrize("body", [b"{}", b'{"streams": null}', b'{"error": null}'])
def test_a_reply_holds_an_outcome_or_an_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        FeedbackReply.model_validate_json(body)
