"""Queue tokens: ``{stream_id, version, queued_at}``, one per entry into ``pending``.

A token is a hint, MongoDB is the truth: a claim applies a token only through a
compare-and-set on ``(status=pending, version, queued_at)``, so a stale or duplicate token
costs one failed update and never hands a stream out twice.

The freshness rule is here and only here: :func:`waiting_guard` (in MongoDB) and
:func:`waits_at` (in memory) say the same thing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from shared.core.types import Doc
from shared.domain.statuses import PENDING


class QueueToken(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream_id: str
    version: int
    queued_at: datetime

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, body: bytes) -> QueueToken:
        return cls.model_validate_json(body)

    def waited_by(self, doc: Doc) -> bool:
        """The stream (as read) still waits in the queue where this token put it."""
        return waits_at(doc, self.version, self.queued_at)


class TokenPublisher(Protocol):
    async def publish_token(
        self, token: QueueToken, group_ids: list[str], *, only_groups: bool = False
    ) -> None: ...

    async def drop_group_queue(self, group_id: str) -> None: ...


#: MongoDB keeps milliseconds: a time read back equals the one written within this
SAME_TIME = timedelta(milliseconds=1)


def waiting_guard(version: int, queued_at: datetime | None) -> Doc:
    """The stream still waits in the queue at this version and place (a claim's guard)."""
    return {"status": PENDING, "version": version, "queued_at": queued_at}


def waits_at(doc: Doc, version: int, queued_at: datetime | None) -> bool:
    """:func:`waiting_guard`, of a stream as read."""
    stored = doc.get("queued_at")
    return (
        doc.get("status") == PENDING
        and doc.get("version") == version
        and stored is not None
        and queued_at is not None
        and abs(stored - queued_at) < SAME_TIME
    )
