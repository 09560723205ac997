"""The internal error tree, and the drivers' errors translated into it once.

RabbitMQ: :func:`shared.messaging.broker.broker_errors`, where aio-pika is called. MongoDB:
:func:`shared.store.mongo.database_errors`, at the edges (the gateway's error middleware). The
gateway answers either with the same 503 body as always.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import aio_pika
import aiormq
import pymongo.errors
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.keys import METRICS
from gateway.metrics import GatewayMetrics
from gateway.middlewares import error_middleware
from shared.core.errors import (
    BackendUnavailable,
    BadEventId,
    BrokerUnavailable,
    ConcurrentModification,
    ConfigurationError,
    DatabaseUnavailable,
    EmbeddedUnavailable,
    InvalidValue,
    LunaError,
    NotConvertible,
    PreviewUrlRefused,
    ServiceError,
)
from shared.messaging.broker import Broker, QueueNames, broker_errors
from shared.store.mongo import database_errors

# --- the tree ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (BackendUnavailable, ServiceError),
        (BrokerUnavailable, BackendUnavailable),
        (DatabaseUnavailable, BackendUnavailable),
        (ConfigurationError, ServiceError),
        (EmbeddedUnavailable, ConfigurationError),
        (ConcurrentModification, ServiceError),
        (InvalidValue, ServiceError),
        (BadEventId, InvalidValue),
        (PreviewUrlRefused, InvalidValue),
        (NotConvertible, InvalidValue),
    ],
)
def test_internal_errors_form_one_tree(error: type[Exception], parent: type[Exception]) -> None:
    assert error.__mro__[1] is parent
    assert not issubclass(error, LunaError)  # internal: never an API answer by itself


def test_unavailable_is_no_builtin_connection_or_runtime_error() -> None:
    """Nothing catches it by accident under a builtin class."""
    assert not issubclass(BrokerUnavailable, (OSError, RuntimeError))
    assert not issubclass(DatabaseUnavailable, (OSError, RuntimeError))


def test_refused_values_stay_value_errors() -> None:
    """pydantic validators and parsers see them as the ValueErrors they were."""
    assert issubclass(InvalidValue, ValueError)


# --- RabbitMQ ---------------------------------------------------------------------------

BROKER_DRIVER_ERRORS = [
    aio_pika.exceptions.AMQPConnectionError("connection refused"),
    aio_pika.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"),
    aiormq.exceptions.ConnectionChannelError(504, "channel error"),
    aiormq.exceptions.ChannelClosed(None, None),
    aio_pika.exceptions.ChannelInvalidStateError("channel closed"),  # a RuntimeError
    aiormq.exceptions.ChannelInvalidStateError("<Channel: 1> closed"),
    # a mandatory publish no queue took
    aio_pika.exceptions.DeliveryError(
        None, aiormq.spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", routing_key="q")
    ),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),
]


@pytest.mark.parametrize("driver_error", BROKER_DRIVER_ERRORS, ids=lambda e: type(e).__name__)
def test_broker_driver_errors_become_broker_unavailable(driver_error: Exception) -> None:
    with pytest.raises(BrokerUnavailable) as raised, broker_errors():
        raise driver_error
    assert raised.value.__cause__ is driver_error
    assert str(raised.value) == (str(driver_error) or type(driver_error).__name__)


@pytest.mark.parametrize(
    "other", [RuntimeError("Collection frozen"), ValueError("bad"), KeyError("x")]
)
def test_other_errors_pass_broker_errors_unchanged(other: Exception) -> None:
    """A bare RuntimeError is a bug, not a lost broker."""
    with pytest.raises(type(other)) as raised, broker_errors():
        raise other
    assert raised.value is other


async def test_broker_methods_translate_where_aio_pika_is_called() -> None:
    async def refused(*args: Any, **kwargs: Any) -> None:
        raise aiormq.exceptions.ChannelInvalidStateError("<Channel: 1> closed")

    channel = SimpleNamespace(default_exchange=SimpleNamespace(publish=refused))
    broker = Broker(
        connection=cast(Any, SimpleNamespace(is_closed=False, transport=None)),
        channel=cast(Any, channel),
        names=QueueNames("test"),
        queue_type="classic",
    )
    broker._queues["test.streams"] = cast(Any, object())
    with pytest.raises(BrokerUnavailable) as raised:
        await broker.publish("test.streams", b"{}")
    assert isinstance(raised.value.__cause__, aiormq.exceptions.ChannelInvalidStateError)
    assert "test.streams" not in broker._queues  # declared again before the next publish
    # reconnecting: no transport, where aio-pika would raise a bare RuntimeError
    with pytest.raises(BrokerUnavailable, match="not open"):
        await broker.open_channel(prefetch=10)


# --- MongoDB ----------------------------------------------------------------------------

DATABASE_DRIVER_ERRORS = [
    pymongo.errors.AutoReconnect("connection closed"),
    pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] refused"),
    pymongo.errors.NetworkTimeout("timed out"),
    pymongo.errors.NotPrimaryError("not primary"),
    pymongo.errors.ConnectionFailure("gone"),
]


@pytest.mark.parametrize("driver_error", DATABASE_DRIVER_ERRORS, ids=lambda e: type(e).__name__)
def test_mongo_outages_become_database_unavailable(driver_error: Exception) -> None:
    with pytest.raises(DatabaseUnavailable) as raised, database_errors():
        raise driver_error
    assert raised.value.__cause__ is driver_error


@pytest.mark.parametrize(
    "answer",
    [
        pymongo.errors.DuplicateKeyError("E11000 duplicate key"),
        pymongo.errors.OperationFailure("resume token not found", code=286),
        RuntimeError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_mongo_errors_pass_unchanged(answer: Exception) -> None:
    """A duplicate key or a refused operation is an answer for the caller, not an outage."""
    with pytest.raises(type(answer)) as raised, database_errors():
        raise answer
    assert raised.value is answer


# --- the gateway's answer ---------------------------------------------------------------


def unavailable_body(driver: str) -> dict[str, Any]:
    """The 503 the gateway has always given when a backing service is away."""
    return {
        "error_code": 2,
        "desc": "Service unavailable",
        "detail": f"a backing service is unavailable ({driver})",
        "link": "https://docs.visionlabs.ai/info/luna/troubleshooting/errors-description/code-2",
    }


def raising(error: Callable[[], Exception]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        raise error()

    return handler


def lost_channel() -> Exception:
    try:
        with broker_errors():
            raise aiormq.exceptions.ChannelInvalidStateError("<Channel: 1> closed")
    except BrokerUnavailable as exc:
        return exc
    raise AssertionError("not translated")


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (lambda: pymongo.errors.AutoReconnect("reset"), 503, unavailable_body("AutoReconnect")),
        (
            lambda: pymongo.errors.ServerSelectionTimeoutError("no server"),
            503,
            unavailable_body("ServerSelectionTimeoutError"),
        ),
        (lost_channel, 503, unavailable_body("ChannelInvalidStateError")),
        (lambda: RuntimeError("a bug"), 500, None),
    ],
    ids=["AutoReconnect", "ServerSelectionTimeoutError", "BrokerUnavailable", "RuntimeError"],
)
async def test_error_middleware_answers_unavailable_as_before(
    error: Callable[[], Exception], status: int, body: dict[str, Any] | None
) -> None:
    app = web.Application(middlewares=[error_middleware])
    app[METRICS] = GatewayMetrics()
    app.router.add_get("/fail", raising(error))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/fail")
        assert resp.status == status
        answer = await resp.json()
    if body is not None:
        assert answer == body
    else:
        assert answer["error_code"] == 1  # a bug: InternalError, never "unavailable"
