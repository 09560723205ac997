"""Middlewares: request id and access log, LUNA error bodies, request metrics, the Host check.

Order (outermost first): request id -> metrics -> errors -> Host check, so that the request
id is echoed and every answer, errors included (a refused Host too), is counted under its
route and logged once (``gateway.access``: method, path, status, duration, request id).
With traces on (:mod:`shared.telemetry.tracing`), aiohttp-server's middleware comes first (the
request's span) and :func:`trace_middleware` right after the request id's.
"""

from __future__ import annotations

import logging
import re
import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from gateway.keys import METRICS, SETTINGS
from shared.core.errors import (
    BackendUnavailable,
    BadHost,
    BadRequestId,
    DependencyUnavailable,
    InternalError,
    LunaError,
    MethodNotAllowed,
    PageNotFound,
    RequestTooLarge,
)
from shared.domain.request_id import HEADER, is_valid_request_id, new_request_id
from shared.store.mongo import database_errors
from shared.telemetry.log_setup import request_id_var
from shared.telemetry.tracing import enabled as tracing_enabled
from shared.telemetry.tracing import request_scope

log = logging.getLogger("gateway.errors")
access_log = logging.getLogger("gateway.access")


def error_response(error: LunaError) -> web.Response:
    return web.json_response(error.body(), status=error.http_status, headers=error.headers())


def route_label(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None:
        return f"{request.method}:unknown"
    resource = info.route.resource
    return f"{request.method}:{resource.canonical if resource is not None else 'unknown'}"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    given = request.headers.get(HEADER)
    if given is not None and not is_valid_request_id(given):
        request_id = new_request_id()
        response: web.StreamResponse = error_response(BadRequestId())
    else:
        request_id = given or new_request_id()
        token = request_id_var.set(request_id)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects: aiohttp answers them
            log_access(request, exc.status, started, request_id)
            raise
        except BaseException:  # a cancelled request (the client went away)
            log_access(request, 499, started, request_id)
            raise
        finally:
            request_id_var.reset(token)
    if not response.prepared:
        response.headers[HEADER] = request_id
    log_access(request, response.status, started, request_id)
    return response


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's span carries its request id, and what it publishes carries it on."""
    with request_scope(request_id_var.get() or ""):
        return await handler(request)


def tracing_middlewares() -> list[Middleware]:
    """:func:`trace_middleware` when traces are on; nothing (no cost) when they are off."""
    return [trace_middleware] if tracing_enabled() else []


def log_access(request: web.Request, status: int, started: float, request_id: str) -> None:
    """One line per request; the path without its query string (it may carry names)."""
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    access_log.info(
        "%s %s %d %.2f ms",
        request.method,
        request.path,
        status,
        duration_ms,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
        },
    )


#: a Host header: a name or an IPv4 address, or an IPv6 address in brackets; then a port
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The host a ``Host`` header names, without its port, lowercase (``[::1]`` for IPv6);
    None when it is not ``host[:port]``."""
    match = _HOST.fullmatch(header.strip().lower())
    return match["name"].rstrip(".") if match else None


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """12031 for a ``Host`` naming none of ``LUNA_STREAMS_ALLOWED_HOSTS``: a web page whose
    name was rebound to the gateway's address (DNS rebinding) cannot use the browser to
    reach a gateway that listens on loopback. A request without a ``Host`` (HTTP/1.0) is
    not a browser's and passes."""
    allowed = request.app[SETTINGS].allowed_hosts
    given = request.headers.get(hdrs.HOST)
    if given is not None and "*" not in allowed and host_name(given) not in allowed:
        raise BadHost(host=given[:200])
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        request.app[METRICS].observe(route_label(request), status, time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """LUNA error bodies. MongoDB's connection errors become
    :class:`~shared.core.errors.DatabaseUnavailable` here (pymongo is called all over a request);
    RabbitMQ's are :class:`~shared.core.errors.BrokerUnavailable` already (where aio-pika is
    called). Either is 503, error code 2: the client may retry."""
    try:
        with database_errors():
            return await handler(request)
    except LunaError as exc:
        error: LunaError = exc
    except web.HTTPRequestEntityTooLarge:
        error = RequestTooLarge(limit=request.app[SETTINGS].max_body_size)
    except web.HTTPMethodNotAllowed:
        error = MethodNotAllowed()
    except web.HTTPNotFound:
        error = PageNotFound()
    except web.HTTPException:
        raise
    except BackendUnavailable as exc:
        cause = exc.__cause__ or exc  # the driver's error: named in the answer, as always
        log.warning("%s %s: dependency unavailable: %r", request.method, request.path, cause)
        error = DependencyUnavailable(
            reason=f"a backing service is unavailable ({type(cause).__name__})"
        )
    except Exception:
        # every other failure is a bug: the client gets error code 1, the log the traceback
        log.exception("unexpected error on %s %s", request.method, request.path)
        error = InternalError()
    request.app[METRICS].errors.labels(
        path=route_label(request), error_code=str(error.error_code)
    ).inc()
    return error_response(error)
