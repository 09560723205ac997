"""Service routes: version, healthcheck, metrics, config, plugins, docs."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import Api, Response
from gateway.keys import BROKER, DATABASE, DOCS, METRICS, SETTINGS
from gateway.parsing import json_response, parse_query
from shared import __version__
from shared.errors import UnsupportedMediaType
from shared.heartbeats import silent_components

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
    responses={200: Response("Service version", VersionResponse)},
)
async def get_version(request: web.Request) -> web.StreamResponse:
    major, minor, patch = (int(p) for p in __version__.split(".")[:3])
    return json_response(
        {"Version": {"api": API_VERSION, "major": major, "minor": minor, "patch": patch}}
    )


async def _check(name: str, probe: Any, within: float) -> dict[str, Any] | None:
    try:
        await asyncio.wait_for(probe, within)
    except Exception as exc:
        return {"service": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
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
    query=HealthcheckQuery,
    responses={
        200: Response("Every dependency answered", HealthcheckOk),
        502: Response("A dependency failed; `errors` names it", HealthcheckFailure),
    },
)
async def get_healthcheck(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, HealthcheckQuery)
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
        return json_response(
            {
                "error_code": 2,
                "desc": "Service unavailable",
                "detail": f"Healthcheck failed: {names}",
                "errors": failures,
            },
            status=502,
        )
    return json_response({"execution_time": round(time.perf_counter() - started, 6)})


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


@api.route(
    "GET",
    "/config",
    summary="Effective settings, passwords and tokens masked",
    responses={
        200: Response("Settings", schema={"type": "object"}),
    },
    errors=(UnsupportedMediaType,),
)
async def get_config(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS].masked()
    accept = request.headers.get("Accept", "application/json")
    if _accepts(accept, "application/json"):
        return json_response(settings)
    if _accepts(accept, "text/plain"):
        text = "\n".join(f"{k} = {v}" for k, v in settings.items()) + "\n"
        return web.Response(text=text, content_type="text/plain")
    raise UnsupportedMediaType()


def _accepts(accept: str, media_type: str) -> bool:
    kinds = {part.split(";")[0].strip() for part in accept.split(",")}
    major = media_type.split("/")[0]
    return bool(kinds & {media_type, f"{major}/*", "*/*"})


@api.route(
    "GET",
    "/plugins",
    summary="List of service plugins",
    responses={200: Response("Plugins", PluginsResponse)},
)
async def get_plugins(request: web.Request) -> web.StreamResponse:
    return json_response({"plugins": []})


@api.route(
    "GET",
    "/docs/spec",
    summary="OpenAPI specification (YAML or HTML)",
    responses={
        200: Response(
            "The specification", content_type="application/x-yaml", schema={"type": "string"}
        )
    },
    errors=(UnsupportedMediaType,),
    headers={
        "Accept": {
            "required": True,
            "schema": {"type": "string", "enum": ["application/x-yaml", "text/html"]},
        }
    },
)
async def get_spec(request: web.Request) -> web.StreamResponse:
    accept = request.headers.get("Accept", "")
    kinds = {part.split(";")[0].strip() for part in accept.split(",")}
    if "application/x-yaml" in kinds:
        return web.Response(text=request.app[DOCS].spec_yaml, content_type="application/x-yaml")
    if "text/html" in kinds:
        return web.Response(text=request.app[DOCS].spec_html, content_type="text/html")
    raise UnsupportedMediaType()


@api.route(
    "GET",
    "/docs/dev",
    summary="Developer manual (redirects to /docs/dev/index.html)",
    responses={302: Response("Redirect to /docs/dev/index.html")},
)
async def get_dev_docs(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/docs/dev/index.html")


@api.route(
    "GET",
    "/docs/dev/{page}",
    summary="A page of the developer manual",
    responses={200: Response("HTML page", content_type="text/html", schema={"type": "string"})},
)
async def get_dev_page(request: web.Request) -> web.StreamResponse:
    html = request.app[DOCS].manual.get(request.match_info["page"])
    if html is None:
        raise web.HTTPNotFound()
    return web.Response(text=html, content_type="text/html")
