"""The tokens of a batch of changes are published together, and a refusal defers them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import cast

import pytest

from shared.core.errors import BrokerUnavailable
from shared.domain.tokens import QueueToken
from shared.store.changes import StreamChanges
from shared.store.mongo import Database


class Publisher:
    """Publishes after a pause (a confirm's round trip); refuses the ids in ``refuse``."""

    def __init__(self, refuse: set[str], error: type[Exception] = BrokerUnavailable) -> None:
        self.refuse = refuse
        self.error = error
        self.published: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish_token(
        self, token: QueueToken, group_ids: list[str], *, only_groups: bool = False
    ) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if token.stream_id in self.refuse:
            raise self.error("refused")
        self.published.append(token.stream_id)

    async def drop_group_queue(self, group_id: str) -> None:
        raise AssertionError("not used")


def tokens(count: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {"stream_id": f"s{i}", "version": 1, "queued_at": now, "groups": []} for i in range(count)
    ]


async def test_tokens_go_out_together_and_a_refused_one_defers_the_batch() -> None:
    publisher = Publisher(refuse={"s3"})
    changes = StreamChanges(cast(Database, None), publisher)
    assert await changes.publish(tokens(8)) is False  # s3 is left to the sweep
    assert sorted(publisher.published) == [f"s{i}" for i in range(8) if i != 3]
    assert publisher.most_in_flight == 8  # one round trip for the batch, not eight

    everything = Publisher(refuse=set())
    assert await StreamChanges(cast(Database, None), everything).publish(tokens(3)) is True
    assert sorted(everything.published) == ["s0", "s1", "s2"]


async def test_an_error_that_is_not_the_broker_s_is_raised() -> None:
    publisher = Publisher(refuse={"s1"}, error=ValueError)
    with pytest.raises(ValueError):
        await StreamChanges(cast(Database, None), publisher).publish(tokens(2))
