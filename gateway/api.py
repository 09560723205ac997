"""The operation table: each route is declared once, with what the OpenAPI spec needs.

Handlers register here with :meth:`Api.route`; the app factory adds every operation to the
router and :mod:`gateway.openapi` builds the served spec from the same table, so a route
cannot exist in one and not in the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from shared.errors import LunaError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Response:
    description: str
    model: type[BaseModel] | None = None
    content_type: str = "application/json"
    schema: Mapping[str, Any] | None = None  # for non-JSON bodies (images, YAML, text)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    responses: Mapping[int, Response]
    errors: tuple[type[LunaError], ...]
    description: str = ""
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def route_label(self) -> str:
        return f"{self.method}:{self.path}"


@dataclass(slots=True)
class Api:
    tag: str
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: Mapping[int, Response],
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        errors: tuple[type[LunaError], ...] = (),
        description: str = "",
        operation_id: str | None = None,
        headers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.add(
                method,
                path,
                handler,
                summary=summary,
                responses=responses,
                query=query,
                body=body,
                errors=errors,
                description=description,
                operation_id=operation_id,
                headers=headers,
            )
            return handler

        return decorator

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        summary: str,
        responses: Mapping[int, Response],
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        errors: tuple[type[LunaError], ...] = (),
        description: str = "",
        operation_id: str | None = None,
        headers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        op_id = operation_id or _operation_id(method, path)
        self.operations.append(
            Operation(
                method=method,
                path=path,
                handler=handler,
                operation_id=op_id,
                summary=summary,
                tag=self.tag,
                query=query,
                body=body,
                responses=responses,
                errors=errors,
                description=description,
                headers=headers or {},
            )
        )


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.strip("/").split("/") if p]
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words).replace("_", "")


def register(app: web.Application, apis: list[Api]) -> None:
    """Every operation into the router; every GET also answers HEAD (headers, no body)."""
    for api in apis:
        for op in api.operations:
            app.router.add_route(op.method, op.path, op.handler)
            if op.method == "GET":
                app.router.add_route("HEAD", op.path, op.handler)


def all_operations(apis: list[Api]) -> list[Operation]:
    return [op for api in apis for op in api.operations]
