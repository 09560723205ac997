"""The broker node list: parsed in one place, and the aio-pika hook it relies on exists."""

from __future__ import annotations

from aio_pika import RobustConnection

from shared.settings import node_urls


def test_node_urls_split_on_commas_and_ignore_blanks() -> None:
    assert node_urls("amqp://a/") == ["amqp://a/"]
    assert node_urls(" amqp://a/ ,amqp://b:5673/,, ") == ["amqp://a/", "amqp://b:5673/"]
    assert node_urls("") == []


def test_the_connection_turns_to_the_next_node_where_aio_pika_connects() -> None:
    # NodeListConnection overrides this private method of aio-pika's robust connection:
    # an upgrade that renames it must fail here, not in a cluster
    hook = "_RobustConnection__connect_transport"
    assert callable(getattr(RobustConnection, hook, None))
