"""The fixtures that bring RabbitMQ, refused: imported by the conftests of the fast tier
(``tests/unit``, ``tests/fast``), where they replace those of ``tests/conftest.py``, so that a
test of the tier that asks for RabbitMQ fails, saying where it belongs, instead of needing a
server. Everything that depends on them (``settings``, ``client``, ``database`` of the root
conftest) is refused with them, unless the tier's conftest provides its own."""

from __future__ import annotations

import pytest


def refuse(what: str) -> None:
    pytest.fail(
        f"{what} needs RabbitMQ, which the fast tier (make test-fast) does not have: "
        "such a test belongs in tests/integration",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def amqp_url() -> str:
    refuse("the amqp_url fixture")
    raise AssertionError("not reached")


@pytest.fixture
def queue_worker() -> None:
    refuse("the queue_worker fixture (a feedback consumer)")
