"""The operation table: each route is declared once, with what the OpenAPI spec needs.

Handlers register here with :meth:`Api.route`; the app factory adds every operation to the
router and :mod:`gateway.openapi` builds the served spec from the same table, so a route
cannot exist in one and not in the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict, Unpack

from aiohttp import web
from pydantic import BaseModel

from shared.core.errors import BadQueryParams, LunaError
from shared.domain.roles import Access

ACCOUNT_PARAMETER = "account_id"

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
    #: what a caller needs when authentication is on (None: read for GET, write otherwise)
    access: Access | None = None

    @property
    def required_access(self) -> Access:
        if self.access is not None:
            return self.access
        return Access.READ if self.method == "GET" else Access.WRITE

    @property
    def route_label(self) -> str:
        return f"{self.method}:{self.path}"

    @property
    def query_takes_account(self) -> bool:
        return self.query is not None and ACCOUNT_PARAMETER in self.query.model_fields

    @property
    def takes_account(self) -> bool:
        """Whether ``account_id`` is one of this operation's parameters (query or body)."""
        return any(
            model is not None and "account_id" in model.model_fields
            for model in (self.query, self.body)
        )


class OperationOptions(TypedDict, total=False):
    """The options of :meth:`Api.route`: those of :meth:`Api.add` (its defaults apply)."""

    summary: Required[str]
    responses: Required[Mapping[int, Response]]
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    errors: tuple[type[LunaError], ...]
    description: str
    operation_id: str | None
    headers: Mapping[str, Mapping[str, Any]] | None
    access: Access | None


@dataclass(slots=True)
class Api:
    tag: str
    operations: list[Operation] = field(default_factory=list)

    def route(
        self, method: str, path: str, **options: Unpack[OperationOptions]
    ) -> Callable[[Handler], Handler]:
        """:meth:`add` as a decorator of the handler, with the same options."""

        def decorator(handler: Handler) -> Handler:
            self.add(method, path, handler, **options)
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
        access: Access | None = None,
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
                access=access,
            )
        )


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.strip("/").split("/") if p]
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words).replace("_", "")


def refusing_account(handler: Handler) -> Handler:
    """``handler`` behind a guard: an ``account_id`` in the query is 12012, not ignored.

    For the operations that have no account scope (the queue, feedback, the v2 previews,
    the service routes): an account given there must not look as if it were honoured."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if ACCOUNT_PARAMETER in request.query:
            raise BadQueryParams(name=ACCOUNT_PARAMETER)
        return await handler(request)

    return guarded


#: each served operation by method and route (HEAD as GET): what the access check reads
OPERATIONS = web.AppKey("operations", dict[tuple[str, str], Operation])


def operation_of(request: web.Request) -> Operation | None:
    """The operation ``request`` was routed to; None when the router found none."""
    info = request.match_info
    resource = info.route.resource
    if info.http_exception is not None or resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return request.app[OPERATIONS].get((method, resource.canonical))


def register(app: web.Application, apis: list[Api]) -> None:
    """Every operation into the router; every GET also answers HEAD (headers, no body)."""
    app[OPERATIONS] = {(op.method, op.path): op for op in all_operations(apis)}
    for api in apis:
        for op in api.operations:
            handler = op.handler if op.query_takes_account else refusing_account(op.handler)
            app.router.add_route(op.method, op.path, handler)
            if op.method == "GET":
                app.router.add_route("HEAD", op.path, handler)


def all_operations(apis: list[Api]) -> list[Operation]:
    return [op for api in apis for op in api.operations]
