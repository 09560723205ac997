"""The broker node list: parsed in one place, and the aio-pika hook it relies on exists;
a close the broker does not answer does not hang a shutdown."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from shared.core.settings import node_urls
from shared.messaging import broker as broker_module
from shared.messaging.broker import Broker, QueueNames


def test_node_urls_split_on_commas_and_ignore_blanks() -> None:
    assert node_urls("amqp://a/") == ["amqp://a/"]
    assert node_urls(" amqp://a/ ,amqp://b:5673/,, ") == ["amqp://a/", "amqp://b:5673/"]
    assert node_urls("") == []


def test_the_connection_turns_to_the_next_node_where_aio_pika_connects() -> None:
    # NodeListConnection overrides this private method of aio-pika's robust connection:
    # an upgrade that renames it must fail here, not in a cluster
    hook = "_RobustConnection__connect_transport"
    assert callable(getattr(RobustConnection, hook, None))


class _StuckConnection:
    """A connection whose close RabbitMQ never answers."""

    is_closed = False

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_a_close_that_gets_no_answer_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "CLOSE_TIMEOUT", 0.05)
    broker = Broker(
        connection=cast(AbstractRobustConnection, _StuckConnection()),
        channel=cast(AbstractRobustChannel, None),
        names=QueueNames("t"),
        queue_type="quorum",
    )
    await asyncio.wait_for(broker.close(), 2.0)  # a TimeoutError here: the shutdown hangs
