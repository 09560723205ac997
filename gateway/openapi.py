"""Build the OpenAPI 3.1 document from the operation table and the pydantic models.

The spec is derived, not copied: every route, parameter, body and error response the app
serves comes from :mod:`gateway.api`, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.api import Operation
from gateway.parsing import PATH_ID
from shared import __version__
from shared.core.errors import (
    BadContentType,
    BadHost,
    BadInputJson,
    BadJson,
    BadPathId,
    BadQueryParams,
    BadRequestId,
    DependencyUnavailable,
    Forbidden,
    InternalError,
    LunaError,
    PageNotFound,
    RequestTooLarge,
    TooManyAuthFailures,
    Unauthorized,
)
from shared.domain.request_id import HEADER, PATTERN
from shared.domain.roles import GRANTS, SCOPABLE, Access

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}]+)}")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "desc", "detail"],
    "properties": {
        "error_code": {"type": "integer", "description": "LUNA error code"},
        "desc": {"type": "string", "description": "Short description"},
        "detail": {"type": "string", "description": "What exactly went wrong"},
        "link": {"type": "string", "description": "Documentation of the error code"},
    },
}

INFO_DESCRIPTION = """\
Open, horizontally scalable implementation of the VisionLabs LUNA Streams API (v1 and v2).

Errors use the LUNA format `{"error_code", "desc", "detail", "link"}`. Every response
carries the `Luna-Request-Id` header (generated when the request has none).

Accounts: an operation with `x-account-scope: account_id` sees, counts, changes and deletes
only the objects of the `account_id` it is given (all accounts without one); an operation
with `x-account-scope: refused` has no account scope (agents, the queue, the v2 previews,
the service routes) and answers an `account_id` query parameter with 12012. `DELETE
/{1,2}/streams/logs` takes an `account_id` as an extension of the reference API.

Authentication (`LUNA_STREAMS_AUTH=on`; off by default, as in the reference service): every
operation but the public ones needs `Authorization: Bearer <token>` (or the console's
session cookie, or a client address inside `LUNA_STREAMS_AGENT_NETWORKS`, which acts as an
`agent`). `x-access` names what an operation needs and `x-roles` the roles that have it;
a viewer or operator token made for one account reaches only the operations with
`x-account-scope: account_id`, with that account (none given: that one; another: 403).
Without a valid credential: 401 (12040); a role or account that does not reach: 403
(12041); too many wrong credentials from one address: 429 (12042).
"""

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (lst_...)"},
    "console": {
        "type": "apiKey",
        "in": "cookie",
        "name": "luna_streams_token",
        "description": "The console's session (POST /console/session); requests that "
        "change something also send X-CSRF-Token",
    },
}


def _models(ops: list[Operation]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for op in ops:
        for model in (op.body, *(r.model for r in op.responses.values())):
            if model is not None:
                seen.setdefault(f"{model.__module__}.{model.__qualname__}", model)
    return list(seen.values())


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", "")
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        if prop.get("type") == "array" or any(
            p.get("type") == "array" for p in prop.get("anyOf", [])
        ):
            param["style"] = "form"
            param["explode"] = False
            param["description"] = (
                description + " Comma-separated, or the parameter repeated."
            ).strip()
        params.append(param)
    return params


def _path_parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for name in _PATH_PARAM.findall(path):
        schema: dict[str, Any] = {"type": "string"}
        if name.endswith("_id"):
            schema = {"type": "string", "format": "uuid", "pattern": PATH_ID.pattern}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _implied_errors(op: Operation) -> list[type[LunaError]]:
    # the error middleware answers these on any route: a bad request id, a lost backend
    # and 12012 on every route: a bad query parameter, or an account_id where none is taken
    implied: list[type[LunaError]] = [
        BadRequestId,
        BadHost,
        InternalError,
        DependencyUnavailable,
        BadQueryParams,
    ]
    if op.body is not None:
        implied += [BadInputJson, BadJson, BadContentType, RequestTooLarge]
    if op.required_access is not Access.PUBLIC:
        implied += [Unauthorized, Forbidden, TooManyAuthFailures]
    names = _PATH_PARAM.findall(op.path)
    if any(name.endswith("_id") for name in names):
        implied.append(BadPathId)
    if any(not name.endswith("_id") for name in names):
        # a named page (``/docs/dev/{page}``): the router matched, nothing has that name
        implied.append(PageNotFound)
    return implied


def _summary(error: type[LunaError]) -> str:
    """The fixed start of the error's message, or its short description."""
    head = error.template.split(":")[0]
    return error.desc if head.startswith("{") else head


def _error_responses(op: Operation) -> dict[str, Any]:
    by_status: dict[int, list[type[LunaError]]] = defaultdict(list)
    for error in (*op.errors, *_implied_errors(op)):
        if error not in by_status[error.http_status]:
            by_status[error.http_status].append(error)
    out = {}
    for status, errors in sorted(by_status.items()):
        codes = "; ".join(f"{e.error_code} ({_summary(e)})" for e in errors)
        out[str(status)] = {
            "description": f"LUNA error: {codes}",
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
    return out


def _operation(op: Operation, names: dict[type[BaseModel], str]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = _path_parameters(op.path)
    if op.query is not None:
        parameters += _query_parameters(op.query)
    parameters.append(
        {
            "name": HEADER,
            "in": "header",
            "required": False,
            "description": "External request id `<10-digit unix time>,<uuid>`; echoed back.",
            "schema": {"type": "string", "pattern": PATTERN.pattern},
        }
    )
    for name, header in op.headers.items():
        parameters.append({"name": name, "in": "header", **header})
    responses: dict[str, Any] = {}
    for status, response in op.responses.items():
        entry: dict[str, Any] = {"description": response.description}
        if response.model is not None:
            schema: dict[str, Any] = {"$ref": REF.format(model=names[response.model])}
            entry["content"] = {response.content_type: {"schema": schema}}
        elif response.schema is not None:
            entry["content"] = {response.content_type: {"schema": dict(response.schema)}}
        responses[str(status)] = entry
    responses.update(_error_responses(op))
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    # which operations are scoped by account: the others refuse an account_id (12012)
    out["x-account-scope"] = "account_id" if op.takes_account else "refused"
    access = op.required_access
    out["x-access"] = access.value
    if access in (Access.PUBLIC, Access.SIGNED_IN):
        out["x-roles"] = ["*"]
    else:
        out["x-roles"] = sorted(role.value for role, grants in GRANTS.items() if access in grants)
    if access is Access.PUBLIC:
        out["security"] = []
    else:
        out["security"] = [{"bearer": []}, {"console": []}]
        if not op.takes_account and SCOPABLE & {r for r in GRANTS if access in GRANTS[r]}:
            out["x-account-scoped-tokens"] = "refused"
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=names[op.body])}}},
        }
    return out


def build_spec(ops: list[Operation]) -> dict[str, Any]:
    models = _models(ops)
    keys, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    names = {model: keys[(model, "validation")]["$ref"].rsplit("/", 1)[1] for model in models}
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for op in ops:
        paths[op.path][op.method.lower()] = _operation(op, names)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "luna-streams",
            "version": __version__,
            "description": INFO_DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in sorted({op.tag for op in ops})],
        "paths": dict(paths),
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }
