"""Queue tokens: ``{stream_id, version, queued_at}``, one per entry into ``pending``.

A token is a hint, MongoDB is the truth: a claim applies a token only through a
compare-and-set on ``(status=pending, version, queued_at)``, so a stale or duplicate token
costs one failed update and never hands a stream out twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

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

    def cas_filter(self) -> dict[str, Any]:
        return {
            "_id": self.stream_id,
            "status": PENDING,
            "version": self.version,
            "queued_at": self.queued_at,
        }


class TokenPublisher(Protocol):
    async def publish_token(
        self, token: QueueToken, group_ids: list[str], *, only_groups: bool = False
    ) -> None: ...

    async def drop_group_queue(self, group_id: str) -> None: ...
