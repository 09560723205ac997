"""Secrets stay secret: the authorization tokens of event handlers (v1) and analytics event
handlers (v2), and the passwords of the MongoDB and RabbitMQ URIs, never show in the logs
(at DEBUG, tracebacks included), in the error details of rejected requests, in ``/config``
(JSON and text) or in ``/metrics``.

A stream's GET returns its event handler as stored, like the real service: not a leak.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from gateway.__main__ import run as gateway_main
from gateway.app import create_app
from gateway.keys import DATABASE
from shared.core.settings import MASK, Settings
from shared.telemetry.log_setup import JsonFormatter, setup_logging
from tests.integration.factories import analytics_item, v1_body, v2_body
from tests.processes import component_env
from tests.reliability.conftest import Client

TOKEN_V1 = f"v1-token-{uuid.uuid4().hex}"
TOKEN_V2 = f"v2-token-{uuid.uuid4().hex}"
MONGO_PASSWORD = f"mongo-pw-{uuid.uuid4().hex}"
AMQP_PASSWORD = f"amqp-pw-{uuid.uuid4().hex}"
SECRETS = (TOKEN_V1, TOKEN_V2, MONGO_PASSWORD, AMQP_PASSWORD)
#: loggers setup_logging keeps at WARNING (their DEBUG records carry commands and frames)
QUIET = ("aiormq", "aio_pika", "pika", "pymongo")


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def with_token_v1(**fields: Any) -> dict[str, Any]:
    body = v1_body(**fields)
    body["event_handler"]["authorization"] = {"token": TOKEN_V1}
    return body


def with_token_v2(**fields: Any) -> dict[str, Any]:
    item = analytics_item()
    item["event_handler"]["authorization"] = {"token": TOKEN_V2}
    return v2_body(analytics=[item], **fields)


class Logs:
    """Every record at DEBUG, formatted as the service formats them (text and JSON)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.text = io.StringIO()
        self.json = io.StringIO()

    def everything(self) -> str:
        records = [repr(record.__dict__) for record in self.caplog.records]
        return "\n".join([self.text.getvalue(), self.json.getvalue(), *records])

    def tracebacks(self) -> list[logging.LogRecord]:
        return [record for record in self.caplog.records if record.exc_info]


@pytest.fixture
def service_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    """The service's logging set-up at its most verbose (``setup_logging("DEBUG")``, which
    keeps the drivers' loggers at WARNING), from the fixture's start to its end: a leak while
    a gateway starts or stops fails here too."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET}
    setup_logging("DEBUG", "text", "gateway")
    service_handler = root.handlers[0]
    logs = Logs(caplog)
    added = []
    for stream, formatter in (
        (logs.text, service_handler.formatter),
        (logs.json, JsonFormatter()),
    ):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.filters = service_handler.filters[:]
        added.append(handler)
    root.handlers[:] = [*handlers, *added]
    caplog.set_level(logging.DEBUG)
    try:
        yield logs
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)
    assert logs.text.getvalue(), "nothing was logged"
    assert not leaked(logs.text.getvalue() + logs.json.getvalue())


@pytest_asyncio.fixture
async def gateway_client(settings: Settings, service_logs: Logs) -> AsyncIterator[Client]:
    """A gateway started (and stopped) while the logs are captured."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


# --- tokens ---------------------------------------------------------------------------------


async def test_tokens_are_not_logged(gateway_client: Client, service_logs: Logs) -> None:
    client = gateway_client
    resp = await client.post("/1/streams", json=with_token_v1())
    assert resp.status == 201, await resp.text()
    v1_id = (await resp.json())["stream_id"]
    resp = await client.post("/2/streams", json=with_token_v2())
    assert resp.status == 201, await resp.text()
    v2_id = (await resp.json())["stream_id"]
    assert (await client.put(f"/1/streams/{v1_id}", json=with_token_v1())).status == 200
    assert (await client.put(f"/2/streams/{v2_id}", json=with_token_v2())).status == 200
    for version, stream_id in ((1, v1_id), (2, v2_id), (1, v2_id), (2, v1_id)):
        assert (await client.get(f"/{version}/streams/{stream_id}")).status == 200
    for version in (1, 2):
        assert (await client.get(f"/{version}/streams")).status == 200
        assert (await client.get(f"/{version}/streams/processing/queue?limit=10")).status == 200
    claim = {"filters": {}, "limit": 10}
    resp = await client.post("/1/streams/processing/queue", json=claim)
    assert resp.status == 200
    # a rejected body, then a request that fails with a traceback (its database is gone)
    assert (await client.post("/1/streams", json=with_token_v1(status="done"))).status == 400
    await client.server.app[DATABASE].client.close()  # type: ignore[index]
    for body, version in ((with_token_v1(), 1), (with_token_v2(), 2)):
        resp = await client.post(f"/{version}/streams", json=body)
        assert resp.status >= 500
        assert not leaked(await resp.text())
    assert service_logs.tracebacks(), "the failing request logged no traceback"
    assert not leaked(service_logs.everything())


def bad_bodies() -> Iterator[tuple[str, int, Any]]:
    """Rejected bodies that carry a token (somewhere, in some shape)."""
    body = with_token_v1()
    body["policies"] = {"filtering": {"min_score": 5}}
    yield "v1, another field is wrong", 1, body
    body = with_token_v1()
    body["event_handler"]["authorization"] = TOKEN_V1
    yield "v1, authorization is the bare token", 1, body
    body = with_token_v1()
    body["event_handler"]["authorization"] = {"token": [TOKEN_V1]}
    yield "v1, token in a list", 1, body
    body = with_token_v1()
    body["event_handler"]["authorization"] = {"token": {"value": TOKEN_V1}}
    yield "v1, token in an object", 1, body
    body = with_token_v1()
    body["event_handler"]["authorization"] = {"token": TOKEN_V1, "password": TOKEN_V2}
    yield "v1, an unknown password field", 1, body
    yield "v1, the body in an array", 1, [with_token_v1()]
    body = with_token_v2()
    body["data"]["analytics"][0]["event_handler"]["authorization"] = TOKEN_V2
    yield "v2, authorization is the bare token", 2, body
    body = with_token_v2()
    body["data"]["analytics"][0]["event_handler"]["authorization"] = {"token": [TOKEN_V2]}
    yield "v2, token in a list", 2, body
    body = with_token_v2()
    body["data"]["analytics"][0]["sending"] = {"silent_period": -5}
    yield "v2, another field is wrong", 2, body
    yield "v2, the body in an array", 2, [with_token_v2()]


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_rejected_bodies_do_not_echo_tokens(module_client: Client, method: str) -> None:
    client = module_client
    resp = await client.post("/1/streams", json=v1_body())
    v1_id = (await resp.json())["stream_id"]
    resp = await client.post("/2/streams", json=v2_body())
    v2_id = (await resp.json())["stream_id"]
    ids = {1: v1_id, 2: v2_id}
    for name, version, body in bad_bodies():
        url = f"/{version}/streams" + (f"/{ids[version]}" if method == "PUT" else "")
        resp = await client.request(method, url, json=body)
        answer = await resp.json()
        assert (resp.status, answer["error_code"]) == (400, 12022), (name, answer)
        assert not leaked(json.dumps(answer) + repr(dict(resp.headers))), (name, answer)
    broken = json.dumps(with_token_v1())[:-1] + ', "x": }'
    resp = await client.post(
        "/1/streams", data=broken, headers={"Content-Type": "application/json"}
    )
    answer = await resp.json()
    assert answer["error_code"] == 12027
    assert not leaked(json.dumps(answer))


async def test_rejected_bodies_keep_their_message(module_client: Client) -> None:
    """What is not a credential is still named in the detail (the masking is narrow)."""
    body = with_token_v1()
    body["event_handler"]["authorization"] = TOKEN_V1
    body["policies"] = {"filtering": {"min_score": 5}}
    resp = await module_client.post("/1/streams", json=body)
    detail = (await resp.json())["detail"]
    assert TOKEN_V1 not in detail
    body = with_token_v1(name=42)
    resp = await module_client.post("/1/streams", json=body)
    assert (await resp.json())["detail"] == (
        "Failed to validate input json. Path: 'name', message: '42 is not of type 'string''"
    )


# --- settings ---------------------------------------------------------------------------------


def secret_settings(settings: Settings, mongo_uri: str, amqp_url: str) -> Settings:
    return settings.model_copy(update={"mongo_uri": mongo_uri, "amqp_url": amqp_url})


@pytest_asyncio.fixture
async def config_client(settings: Settings) -> AsyncIterator[Any]:
    """``/config`` and ``/metrics`` of a gateway without its backends (they need none)."""

    async def start(custom: Settings) -> Client:
        app = create_app(custom)
        app.cleanup_ctx.clear()
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        started.append(client)
        return client

    started: list[Client] = []
    yield start
    for client in started:
        await client.close()


URIS = {
    "plain": (
        f"mongodb://admin:{MONGO_PASSWORD}@127.0.0.1:27017/?directConnection=true",
        f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/",
    ),
    "tls, vhost, options": (
        f"mongodb+srv://admin:{MONGO_PASSWORD}@cluster.example.org/db?tls=true",
        f"amqps://luna:{AMQP_PASSWORD}@rabbit.example.org:5671/luna?heartbeat=30",
    ),
    "percent-encoded": (
        f"mongodb://admin:{quote('@:/' + MONGO_PASSWORD, safe='')}@127.0.0.1:27017/",
        f"amqp://guest:{quote('%#?' + AMQP_PASSWORD, safe='')}@127.0.0.1:5672/",
    ),
    "password only": (
        f"mongodb://:{MONGO_PASSWORD}@127.0.0.1:27017/",
        f"amqp://:{AMQP_PASSWORD}@127.0.0.1:5672/",
    ),
    "replica set": (
        f"mongodb://admin:{MONGO_PASSWORD}@db1:27017,db2:27017,db3:27017/?replicaSet=rs0",
        f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/",
    ),
    "password in the options": (
        f"mongodb://admin@db1:27017/?tls=true&tlsCertificateKeyFilePassword={MONGO_PASSWORD}",
        f"amqp://guest@127.0.0.1:5672/?password={AMQP_PASSWORD}",
    ),
}
REPORTED: dict[str, str] = {}


@pytest.mark.parametrize(
    "uris",
    [
        pytest.param(
            URIS[name],
            id=name,
            marks=[pytest.mark.xfail(strict=True, reason=REPORTED[name])]
            if name in REPORTED
            else [],
        )
        for name in URIS
    ],
)
async def test_config_masks_passwords(
    settings: Settings, config_client: Any, uris: tuple[str, str]
) -> None:
    client = await config_client(secret_settings(settings, *uris))
    resp = await client.get("/config")
    assert resp.status == 200, await resp.text()
    as_json = await resp.text()
    assert not leaked(as_json)
    body = json.loads(as_json)
    assert MASK in body["LUNA_STREAMS_MONGO_URI"]
    assert MASK in body["LUNA_STREAMS_AMQP_URL"]
    resp = await client.get("/config", headers={"Accept": "text/plain"})
    assert resp.status == 200
    as_text = await resp.text()
    assert not leaked(as_text)
    assert f"LUNA_STREAMS_AMQP_URL = {body['LUNA_STREAMS_AMQP_URL']}" in as_text


async def test_metrics_show_no_secret(module_client: Client) -> None:
    """After requests carrying tokens (in the body, the path, the query), nothing of them
    is in ``/metrics``."""
    client = module_client
    assert (await client.post("/1/streams", json=with_token_v1())).status == 201
    assert (await client.post("/2/streams", json=with_token_v2())).status == 201
    body = with_token_v1()
    body["event_handler"]["authorization"] = TOKEN_V1
    assert (await client.post("/1/streams", json=body)).status == 400
    assert (await client.get(f"/1/streams/{TOKEN_V1}")).status == 404
    assert (await client.get(f"/1/{TOKEN_V2}")).status == 404
    assert (await client.get("/1/streams", params={"names": TOKEN_V1})).status == 200
    assert (await client.get("/1/streams", params={"page": TOKEN_V2})).status == 400
    resp = await client.get("/metrics")
    text = await resp.text()
    assert 'luna_streams_http_requests_total{path="POST:/1/streams",status_code="201"}' in text
    assert not leaked(text)


# --- start-up failures --------------------------------------------------------------------------


async def test_wrong_passwords_are_not_logged_at_start(
    settings: Settings, service_logs: Logs, mongo_uri: str
) -> None:
    """A gateway refused by MongoDB, then by RabbitMQ: the error names neither password."""
    host = mongo_uri.split("://", 1)[1]
    wrong_mongo = settings.model_copy(
        update={"mongo_uri": f"mongodb://admin:{MONGO_PASSWORD}@{host}"}
    )
    amqp_host = settings.amqp_url.split("@", 1)[1]
    wrong_amqp = settings.model_copy(
        update={"amqp_url": f"amqp://guest:{AMQP_PASSWORD}@{amqp_host}"}
    )
    for wrong in (wrong_mongo, wrong_amqp):
        client: Client = TestClient(TestServer(create_app(wrong)))
        try:
            with pytest.raises(Exception) as failure:  # whatever the driver raises
                await client.start_server()
        finally:
            await client.close()
        assert not leaked(f"{failure.value!s} {failure.value!r}"), failure.value
    assert not leaked(service_logs.everything())


def test_gateway_start_failure_line_has_no_password(
    settings: Settings,
    mongo_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``python -m gateway`` logs one line when it cannot start: without the password."""
    host = mongo_uri.split("://", 1)[1]
    wrong = settings.model_copy(update={"mongo_uri": f"mongodb://admin:{MONGO_PASSWORD}@{host}"})
    for name, value in component_env(wrong, LUNA_STREAMS_PORT="1").items():
        if name.startswith(("LUNA_STREAMS_", "STREAM_STATUS_")):
            monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        # its own thread: ``asyncio.run`` there leaves this thread's event loop alone
        with ThreadPoolExecutor(1) as pool, pytest.raises(SystemExit) as stop:
            pool.submit(gateway_main).result(timeout=60)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "gateway failed: OperationFailure" in err
    assert not leaked(err)
