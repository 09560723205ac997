"""Service routes: version, healthcheck, metrics, config, plugins, docs."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from gateway.api import Api, Response
from gateway.keys import BROKER, DATABASE, DOCS, METRICS, READINESS, SETTINGS
from gateway.negotiation import negotiate
from gateway.parsing import json_response, parse_query
from shared import __version__
from shared.core.errors import BackendUnavailable, UnsupportedMediaType
from shared.core.settings import GatewaySettings
from shared.domain.roles import Access
from shared.runtime.heartbeats import silent_components

api = Api(tag="service")

API_VERSION = 1


class VersionInfo(BaseModel):
    api: int
    major: int
    minor: int
    patch: int


class VersionResponse(BaseModel):
    Version: VersionInfo


class HealthcheckQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_luna_services: int = Field(
        default=0,
        ge=0,
        le=1,
        description="1: also check the workers (queue-worker consumers, heartbeats of the "
        "autorestart worker and the log janitor)",
    )


class HealthcheckOk(BaseModel):
    execution_time: float


class HealthcheckFailure(BaseModel):
    error_code: int
    desc: str
    detail: str
    errors: list[dict[str, Any]]


class PluginInfo(BaseModel):
    name: str
    running: Literal[0, 1]


class PluginsResponse(BaseModel):
    plugins: list[PluginInfo]


@api.route(
    "GET",
    "/version",
    summary="Get service version",
    access=Access.PUBLIC,
    responses={200: Response("Service version", VersionResponse)},
)
async def get_version(request: web.Request) -> web.StreamResponse:
    major, minor, patch = (int(p) for p in __version__.split(".")[:3])
    return json_response(
        {"Version": {"api": API_VERSION, "major": major, "minor": minor, "patch": patch}}
    )


async def _check(name: str, probe: Any, within: float) -> dict[str, Any] | None:
    try:
        async with asyncio.timeout(within):
            await probe
    except (BackendUnavailable, PyMongoError, OSError, LookupError, TimeoutError) as exc:
        # what a probe reports: the dependency is away (MongoDB's own error, or RabbitMQ's
        # translated), refused, silent, or no worker answers; anything else is a bug (500)
        named = exc.__cause__ if isinstance(exc, BackendUnavailable) and exc.__cause__ else exc
        return {"service": name, "error": f"{type(named).__name__}: {exc}"[:300]}
    return None


async def _check_broker(request: web.Request, include_workers: bool) -> None:
    broker = request.app[BROKER]
    if not await broker.is_open():
        raise ConnectionError("connection to RabbitMQ is closed")
    _, consumers = await broker.queue_depth(broker.names.feedback)
    if include_workers and not consumers:
        raise LookupError("no queue worker consumes the feedback queue")


async def _check_workers(request: web.Request) -> None:
    silent = await silent_components(request.app[DATABASE])
    if silent:
        raise LookupError(f"no recent heartbeat from: {', '.join(silent)}")


@api.route(
    "GET",
    "/healthcheck",
    summary="Check that MongoDB and RabbitMQ answer",
    access=Access.PUBLIC,
    query=HealthcheckQuery,
    responses={
        200: Response("Every dependency answered", HealthcheckOk),
        502: Response("A dependency failed; `errors` names it", HealthcheckFailure),
        503: Response(
            "The gateway is stopping (SIGTERM): take it out of rotation", HealthcheckFailure
        ),
    },
)
async def get_healthcheck(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, HealthcheckQuery)
    if not request.app[READINESS].ready:
        return _unavailable("The gateway is stopping", [], status=503)
    started = time.perf_counter()
    timeout = 3.0
    checks = [
        _check("mongodb", request.app[DATABASE].ping(), timeout),
        _check(
            "rabbitmq" if not query.include_luna_services else "rabbitmq/queue-worker",
            _check_broker(request, bool(query.include_luna_services)),
            timeout,
        ),
    ]
    if query.include_luna_services:
        checks.append(_check("workers", _check_workers(request), timeout))
    results = await asyncio.gather(*checks)
    failures = [r for r in results if r is not None]
    if failures:
        names = ", ".join(f["service"] for f in failures)
        return _unavailable(f"Healthcheck failed: {names}", failures, status=502)
    return json_response({"execution_time": round(time.perf_counter() - started, 6)})


def _unavailable(detail: str, errors: list[dict[str, Any]], status: int) -> web.Response:
    """A :class:`HealthcheckFailure` answer."""
    body = {"error_code": 2, "desc": "Service unavailable", "detail": detail, "errors": errors}
    return json_response(body, status=status)


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    responses={
        200: Response(
            "Prometheus text format", content_type="text/plain", schema={"type": "string"}
        )
    },
)
async def get_metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


CONFIG_TYPES = ("application/json", "text/plain")


@api.route(
    "GET",
    "/config",
    summary="Effective settings, passwords and tokens masked",
    access=Access.ADMIN,
    responses={
        200: Response("Settings", schema={"type": "object"}),
    },
    errors=(UnsupportedMediaType,),
    headers={
        "Accept": {
            "required": False,
            "description": "Acceptable type of receiving data (absent: application/json).",
            "schema": {"type": "string", "enum": list(CONFIG_TYPES)},
        }
    },
)
async def get_config(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS].masked(GatewaySettings)
    chosen = negotiate(request.headers.get("Accept"), CONFIG_TYPES)
    if chosen == "application/json":
        return json_response(settings)
    if chosen == "text/plain":
        text = "\n".join(f"{k} = {v}" for k, v in settings.items()) + "\n"
        return web.Response(text=text, content_type="text/plain")
    raise UnsupportedMediaType()


@api.route(
    "GET",
    "/plugins",
    summary="List of service plugins",
    responses={200: Response("Plugins", PluginsResponse)},
)
async def get_plugins(request: web.Request) -> web.StreamResponse:
    return json_response({"plugins": []})


#: what ``/docs/spec`` can give, in the order a wildcard (``*/*``, ``text/*``) picks from
SPEC_TYPES = ("application/x-yaml", "application/yaml", "application/json", "text/html")


@api.route(
    "GET",
    "/docs/spec",
    summary="OpenAPI specification (YAML, JSON or HTML)",
    access=Access.PUBLIC,
    description="`Accept: application/x-yaml` (as in the reference) or `application/yaml`: "
    "the YAML, also for any type (`*/*`, what curl sends) and an absent header; "
    "`application/json`: the same document as JSON; `text/html`: a readable page. "
    "Any other type: 12024.",
    responses={
        200: Response(
            "The specification", content_type="application/x-yaml", schema={"type": "object"}
        )
    },
    errors=(UnsupportedMediaType,),
    headers={
        "Accept": {
            "required": False,
            "description": "Acceptable type of receiving data (absent: any).",
            "schema": {"type": "string", "enum": [*SPEC_TYPES, "*/*"]},
        }
    },
)
async def get_spec(request: web.Request) -> web.StreamResponse:
    docs = request.app[DOCS]
    chosen = negotiate(request.headers.get("Accept"), SPEC_TYPES)
    if chosen in ("application/x-yaml", "application/yaml"):
        return web.Response(text=docs.spec_yaml, content_type=chosen)
    if chosen == "application/json":
        return json_response(docs.spec)
    if chosen == "text/html":
        return web.Response(text=docs.spec_html, content_type="text/html")
    raise UnsupportedMediaType()


@api.route(
    "GET",
    "/docs/dev",
    summary="Developer manual (redirects to /docs/dev/index.html)",
    access=Access.PUBLIC,
    responses={302: Response("Redirect to /docs/dev/index.html")},
    headers={
        "Accept": {
            "required": False,
            "description": "Preferred response content type, as in the reference; the "
            "redirect is the same whatever it says.",
            "schema": {"type": "string", "enum": ["application/json", "application/msgpack"]},
        }
    },
)
async def get_dev_docs(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/docs/dev/index.html")


@api.route(
    "GET",
    "/docs/dev/{page}",
    summary="A page of the developer manual (`configuration.html`, or `configuration`)",
    access=Access.PUBLIC,
    responses={200: Response("HTML page", content_type="text/html", schema={"type": "string"})},
)
async def get_dev_page(request: web.Request) -> web.StreamResponse:
    manual, page = request.app[DOCS].manual, request.match_info["page"]
    html = manual.get(page) or manual.get(f"{page}.html")
    if html is None:
        raise web.HTTPNotFound()
    return web.Response(text=html, content_type="text/html")
