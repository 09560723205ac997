"""A feedback batch between a gateway and a queue worker, and the worker's reply.

The gateway validates an agent's body once (:class:`~shared.domain.models.FeedbackRequest`),
puts its items in a :class:`FeedbackBatch` and publishes ``batch.model_dump_json()``; the
queue worker validates the body once (``FeedbackBatch.model_validate_json``) and fills in
what travels beside it (:meth:`FeedbackBatch.delivered`). From there on feedback is typed
items, up to the worker's :class:`FeedbackReply`, validated once by the gateway.

The wire format is the one in flight before these models: the body is the agent's
``{"streams": [...]}``; the batch id is the message's id, ``redelivered`` the broker's flag
and ``received_at`` a header, so none of them is in the body (an older worker, which
refuses unknown fields, takes a newer gateway's batches, and the other way round). A reply
is ``{"streams": {"modified": [...], "unmodified": [...]}}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import uuid
from typing import Any, Self

from pydantic import Field, model_validator

from shared.domain.models.common import StrictModel
from shared.domain.models.feedback import FEEDBACK_MAX_ITEMS, FeedbackItem


def _new_batch_id() -> str:
    return str(uuid.uuid4())


class FeedbackBatch(StrictModel):
    """One request's reports, as a queue worker applies them."""

    #: the body: the agent's reports, in its order
    streams: list[FeedbackItem] = Field(max_length=FEEDBACK_MAX_ITEMS)
    #: the message's id (and correlation id); each item's feedback id is
    #: ``<batch id>:<index>``, its log row's ``_id``
    batch_id: str = Field(default_factory=_new_batch_id, exclude=True)
    #: the broker's flag: its first delivery may have applied some of it
    redelivered: bool = Field(default=False, exclude=True)
    #: when the request arrived at its gateway (Unix time; a header, absent from an older
    #: gateway's batch), for the feedback-lag metric
    received_at: float | None = Field(default=None, exclude=True)

    def delivered(self, batch_id: str, *, redelivered: bool, received_at: Any) -> FeedbackBatch:
        """The batch as a worker took it: what travels beside the body filled in."""
        arrived = (
            float(received_at)
            if isinstance(received_at, int | float) and not isinstance(received_at, bool)
            else None
        )
        return self.model_copy(
            update={"batch_id": batch_id, "redelivered": redelivered, "received_at": arrived}
        )


class FeedbackEntry(StrictModel):
    """One report's answer: the stream, and its status and version (as reported when the
    report was applied, else as they are: ``not_found`` for a deleted stream)."""

    stream_id: str
    status: str
    version: int


class FeedbackOutcome(StrictModel):
    """A batch's answers, each list in the order of the batch's items."""

    modified: list[FeedbackEntry] = Field(default_factory=list)
    unmodified: list[FeedbackEntry] = Field(default_factory=list)


class FeedbackReply(StrictModel):
    """A queue worker's answer to a batch: its outcome, or why it was not applied.

    Exactly one of the two; the other is not sent (``model_dump_json(exclude_none=True)``,
    :meth:`body`)."""

    streams: FeedbackOutcome | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _one_of_two(self) -> Self:
        if (self.streams is None) == (self.error is None):
            raise ValueError("a feedback reply holds either streams or an error")
        return self

    def body(self) -> bytes:
        """The reply as it travels (and as the gateway answers the agent)."""
        return self.model_dump_json(exclude_none=True).encode()
