"""Service endpoints against real MongoDB (wire protocol) and RabbitMQ."""

from __future__ import annotations

import re
import time
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from gateway.app import create_app
from shared.core.settings import MASK, GatewaySettings, Settings

Client = TestClient[Any, Any]
REQUEST_ID = re.compile(r"^[0-9]{10},[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")


async def test_version(client: Client) -> None:
    resp = await client.get("/version")
    assert resp.status == 200
    body = await resp.json()
    assert set(body["Version"]) == {"api", "major", "minor", "patch"}
    assert body["Version"]["api"] == 1


async def test_request_id_generated_and_echoed(client: Client) -> None:
    resp = await client.get("/version")
    assert REQUEST_ID.fullmatch(resp.headers["Luna-Request-Id"])
    given = "1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a"
    resp = await client.get("/version", headers={"Luna-Request-Id": given})
    assert resp.headers["Luna-Request-Id"] == given
    resp = await client.get("/nowhere", headers={"Luna-Request-Id": given})
    assert resp.status == 404
    assert resp.headers["Luna-Request-Id"] == given


async def test_malformed_request_id_is_refused(client: Client) -> None:
    resp = await client.get("/version", headers={"Luna-Request-Id": "not-an-id"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error_code"] == 12029
    assert "Luna-Request-Id" in body["detail"]
    assert REQUEST_ID.fullmatch(resp.headers["Luna-Request-Id"])


async def test_unknown_route_and_wrong_method(client: Client) -> None:
    resp = await client.get("/1/nothing-here")
    assert resp.status == 404
    assert await resp.json() == {
        "error_code": 12013,
        "desc": "Resource not found",
        "detail": "Page not found",
        "link": "https://docs.visionlabs.ai/info/luna/troubleshooting/errors-description/code-12013",
    }
    resp = await client.delete("/version")
    assert resp.status == 405
    assert (await resp.json())["error_code"] == 12021


async def test_healthcheck_ok(client: Client) -> None:
    started = time.perf_counter()
    resp = await client.get("/healthcheck")
    wall = time.perf_counter() - started
    assert resp.status == 200
    body = await resp.json()
    assert 0 < body["execution_time"] <= wall, (body, wall)  # seconds, the checks' own time
    resp = await client.get("/healthcheck", params={"include_luna_services": "7"})
    assert resp.status == 400
    assert (await resp.json())["error_code"] == 12012


async def test_healthcheck_names_mongodb_when_it_is_down(settings: Settings) -> None:
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        from gateway.keys import DATABASE

        database = app[DATABASE]
        await database.client.close()  # the database is gone for this gateway
        resp = await client.get("/healthcheck")
        assert resp.status == 502
        body = await resp.json()
        assert [e["service"] for e in body["errors"]] == ["mongodb"]
        assert "mongodb" in body["detail"]


async def test_metrics_count_requests(client: Client) -> None:
    await client.get("/version")
    await client.get("/version")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    line = 'luna_streams_http_requests_total{path="GET:/version",status_code="200"} 2.0'
    assert line in text
    assert "luna_streams_http_request_duration_seconds_bucket" in text


async def test_config_masks_secrets(mongo_uri: str, amqp_url: str) -> None:
    settings = Settings(
        mongo_uri="mongodb://admin:s3cr3t-mongo@127.0.0.1:1/?directConnection=true",
        amqp_url="amqp://guest:s3cr3t-amqp@127.0.0.1:5672/",
    )
    body = settings.masked()
    text = repr(body)
    assert "s3cr3t" not in text
    assert body["LUNA_STREAMS_AMQP_URL"] == f"amqp://guest:{MASK}@127.0.0.1:5672/"


async def test_config_endpoint(client: Client, settings: Settings) -> None:
    resp = await client.get("/config")
    assert resp.status == 200
    body = await resp.json()
    assert body["LUNA_STREAMS_PORT"] == settings.port
    assert body["LUNA_STREAMS_AMQP_URL"].startswith("amqp://guest:" + MASK)
    # the gateway's settings, not the workers' (the test passes them all)
    assert "LUNA_STREAMS_HEADER_TIMEOUT" in body
    assert "LUNA_STREAMS_FEEDBACK_PREFETCH" not in body
    assert "LUNA_STREAMS_LOGS_CLEAR_INTERVAL" not in body
    assert len(body) == len(GatewaySettings.model_fields)
    resp = await client.get("/config", headers={"Accept": "text/plain"})
    assert resp.status == 200
    assert "LUNA_STREAMS_PORT = " in await resp.text()
    resp = await client.get("/config", headers={"Accept": "image/png"})
    assert (await resp.json())["error_code"] == 12024


async def test_plugins(client: Client) -> None:
    resp = await client.get("/plugins")
    assert await resp.json() == {"plugins": []}


async def test_docs_spec(client: Client) -> None:
    resp = await client.get("/docs/spec", headers={"Accept": "application/x-yaml"})
    assert resp.status == 200
    assert resp.content_type == "application/x-yaml"
    spec = yaml.safe_load(await resp.text())
    validate(spec)
    assert "/1/streams" in spec["paths"]
    resp = await client.get("/docs/spec", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert "<code>/1/streams/{stream_id}</code>" in await resp.text()
    resp = await client.get("/docs/spec", headers={"Accept": "image/png"})
    assert resp.status == 406
    assert (await resp.json())["error_code"] == 12024


async def test_docs_dev(client: Client) -> None:
    resp = await client.get("/docs/dev", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/docs/dev/index.html"
    resp = await client.get("/docs/dev/index.html")
    assert resp.status == 200
    assert "luna-streams" in await resp.text()
    resp = await client.get("/docs/dev/missing.html")
    assert resp.status == 404


async def test_every_route_is_in_the_spec_and_back(client: Client) -> None:
    app = client.server.app
    assert app is not None
    served = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method != "HEAD":
                served.add((route.method.lower(), resource.canonical))
    from gateway.keys import DOCS

    spec = app[DOCS].spec
    documented = {(m, path) for path, ops in spec["paths"].items() for m in ops}
    assert served == documented


async def test_head_answers_on_every_get_route(client: Client) -> None:
    for path in ("/version", "/healthcheck", "/plugins", "/metrics", "/config", "/1/streams"):
        resp = await client.head(path)
        assert resp.status == 200, path
        assert await resp.read() == b""
        assert REQUEST_ID.fullmatch(resp.headers["Luna-Request-Id"])
    resp = await client.head("/docs/dev", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/docs/dev/index.html"
    resp = await client.head("/docs/spec", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert resp.content_type == "text/html"


async def test_docs_spec_follows_accept(client: Client) -> None:
    for accept, content_type in (
        ("*/*", "application/x-yaml"),
        ("application/yaml", "application/yaml"),
        ("application/x-yaml", "application/x-yaml"),
        ("text/html;q=0.5, application/json", "application/json"),
        ("text/*", "text/html"),
    ):
        resp = await client.get("/docs/spec", headers={"Accept": accept})
        assert resp.status == 200, accept
        assert resp.content_type == content_type, accept
    resp = await client.get("/docs/spec", headers={"Accept": "application/json"})
    spec = await resp.json()
    validate(spec)
    resp = await client.get("/docs/spec", headers={"Accept": "*/*"})
    assert yaml.safe_load(await resp.text()) == spec
    for refused in ("image/png", "application/json;q=0"):
        resp = await client.get("/docs/spec", headers={"Accept": refused})
        assert resp.status == 406, refused
        assert (await resp.json())["error_code"] == 12024


async def test_docs_dev_pages_without_html_suffix(client: Client) -> None:
    full = await client.get("/docs/dev/configuration.html")
    short = await client.get("/docs/dev/configuration")
    assert full.status == short.status == 200
    assert await full.text() == await short.text()
    assert (await client.get("/docs/dev/nothing")).status == 404


async def test_config_and_docs_dev_document_accept(client: Client) -> None:
    from gateway.keys import DOCS

    app = client.server.app
    assert app is not None
    paths = app[DOCS].spec["paths"]

    def accept_enum(path: str) -> list[str]:
        params = paths[path]["get"]["parameters"]
        (accept,) = [p for p in params if p["name"] == "Accept" and p["in"] == "header"]
        return list(accept["schema"]["enum"])

    assert accept_enum("/config") == ["application/json", "text/plain"]
    assert accept_enum("/docs/dev") == ["application/json", "application/msgpack"]
    assert "application/json" in accept_enum("/docs/spec")
