"""A process given several broker nodes connects to one that answers, and turns to the
next one at every attempt (the failover itself: tests/fault/test_broker_node_kill.py)."""

from __future__ import annotations

import pytest

from shared.core.errors import BrokerUnavailable
from shared.core.settings import Settings
from shared.messaging.broker import NodeListConnection, connect_nodes, open_broker
from tests.services import free_port


def _dead_node(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"  # nothing listens there


async def test_a_node_that_does_not_answer_is_skipped(settings: Settings) -> None:
    port = free_port()
    broker = await open_broker(f"{_dead_node(port)},{settings.amqp_url}", settings.queue_prefix)
    try:
        assert isinstance(broker.connection, NodeListConnection)
        assert broker.connection.url.port != port
        await broker.publish(broker.names.streams, b"{}")
        assert (await broker.queue_depth(broker.names.streams))[0] == 1
    finally:
        await broker.delete_queue(broker.names.streams)
        await broker.delete_queue(broker.names.feedback)
        await broker.delete_queue(broker.names.feedback_dead)
        await broker.close()


async def test_no_node_answering_is_a_broker_outage() -> None:
    with pytest.raises(BrokerUnavailable):
        await connect_nodes(f"{_dead_node(free_port())},{_dead_node(free_port())}", timeout=2)


async def test_every_attempt_after_the_first_goes_to_the_next_node(settings: Settings) -> None:
    port = free_port()
    connection = await connect_nodes(f"{settings.amqp_url},{_dead_node(port)}", timeout=5)
    try:
        first = connection.url
        assert connection.node == 0
        # what a lost connection does: aio-pika connects again, through the hook
        lost, connection.transport = connection.transport, None
        assert lost is not None
        await lost.connection.close()
        with pytest.raises(ConnectionError):
            await connection._RobustConnection__connect_transport()
        assert (connection.node, connection.url.port) == (1, port)
        await connection._RobustConnection__connect_transport()
        assert (connection.node, connection.url) == (0, first)
    finally:
        await connection.close()
