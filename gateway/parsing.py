"""Request parsing: query strings, JSON bodies and path ids into models, or a LUNA error.

Nothing here touches storage: a request that fails to parse has written nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import typing
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.keys import ACCOUNT_NAMED, PRINCIPAL, SETTINGS
from shared.core.errors import (
    BadContentType,
    BadInputJson,
    BadJson,
    BadPathId,
    BadQueryParams,
    Forbidden,
)
from shared.core.settings import MASK
from shared.domain.models.common import UUID_PATTERN, format_validation_error
from shared.domain.roles import scope_refusal

M = TypeVar("M", bound=BaseModel)

#: keys whose values are credentials, never quoted back in an error detail
_CREDENTIAL_KEY = re.compile(r"token|password|secret", re.IGNORECASE)
_WITHHELD = "invalid value (not shown: it is, or is next to, a credential)"

#: what a ``*_id`` path segment must be (the OpenAPI spec documents this very pattern)
PATH_ID = re.compile(UUID_PATTERN)

ACCOUNT = "account_id"


def scope_account(request: web.Request, raw: dict[str, Any], model: type[BaseModel]) -> None:
    """The account rule of an account-scoped token, for a query or a body that takes an
    ``account_id``: none given means the token's; another one is 403."""
    if ACCOUNT not in model.model_fields:
        return
    principal = request.get(PRINCIPAL)
    given = raw.get(ACCOUNT)
    if principal is not None and principal.account_id is not None:
        if given is None:
            raw[ACCOUNT] = given = principal.account_id
        reason = scope_refusal(principal, given if isinstance(given, str) else None)
        if reason is not None:
            raise Forbidden(reason=reason)
    if isinstance(given, str):
        request[ACCOUNT_NAMED] = given


def _is_list_field(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list_field(arg) for arg in typing.get_args(annotation))


def parse_query(request: web.Request, model: type[M]) -> M:
    """Query string to ``model``; lists come comma-separated or as repeated parameters.

    A scalar parameter given twice, or any value the model refuses, is 12012 naming it.
    """
    raw: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        values = request.query.getall(key, [])
        if not values:
            continue
        if _is_list_field(field.annotation):
            raw[key] = [item for value in values for item in value.split(",") if item != ""]
        elif len(values) > 1:
            raise BadQueryParams(name=key)
        else:
            raw[key] = values[0]
    scope_account(request, raw, model)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        raise BadQueryParams(name=str(loc[0]) if loc else "query") from None


def decode_json(raw: bytes) -> Any:
    def reject_constant(value: str) -> Any:
        raise ValueError(f"{value} is not valid JSON")

    text = raw.decode("utf-8")
    data = json.loads(text, parse_constant=reject_constant)
    # "\ud800" escapes decode to lone surrogates that no database can store
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    return data


async def read_body(request: web.Request, content_type: str) -> bytes:
    """The whole request body: 12023 for another content type, 12027 when it does not
    arrive within ``LUNA_STREAMS_BODY_TIMEOUT``."""
    if request.content_type != content_type:
        raise BadContentType(allowed=content_type)
    limit = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise BadJson(message=f"body not received within {limit:g} s") from None


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 12023 for another content type, 12027 for broken JSON."""
    raw = await read_body(request, "application/json")
    try:
        return decode_json(raw)
    except UnicodeDecodeError:
        raise BadJson(message="body is not valid UTF-8") from None
    except UnicodeEncodeError:
        raise BadJson(message="body has a string with an unpaired surrogate") from None
    except RecursionError:
        raise BadJson(message="body is nested too deeply") from None
    except ValueError as exc:
        raise BadJson(message=str(exc)) from None


def validate_body(data: Any, model: type[M]) -> M:
    if not isinstance(data, dict):
        shown = _short(_redacted(data))
        raise BadInputJson(path="", message=f"{shown} is not of type 'object'")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        path, message = _explain(exc, data, model)
        raise BadInputJson(path=path, message=message) from None


def _redacted(value: Any, secret: bool = False) -> Any:
    """``value`` with every credential string replaced by the mask: the strings under a
    ``token``, ``password`` or ``secret`` key, and a bare string given as ``authorization``.
    Same shape, same keys, same types; nothing else changes (an ``account_id`` stays)."""
    if isinstance(value, dict):
        return {
            key: _redacted(
                item,
                secret
                or bool(_CREDENTIAL_KEY.search(str(key)))
                or (str(key).lower() == "authorization" and isinstance(item, str)),
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item, secret) for item in value]
    return MASK if secret and isinstance(value, str) else value


def _explain(exc: ValidationError, data: dict[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    """The 12022 path and message of ``exc``, quoting no credential of ``data``.

    A body with credentials is validated again with them masked (the same shape fails the
    same way) and the message of that failure is given instead.
    """
    path, message = format_validation_error(exc)
    try:
        redacted = _redacted(data)
    except RecursionError:
        return path, _WITHHELD
    if redacted == data:
        return path, message
    try:
        model.model_validate(redacted)
    except ValidationError as masked:
        masked_path, masked_message = format_validation_error(masked)
        if masked_path == path:
            return path, masked_message
    return path, _WITHHELD


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    if isinstance(data, dict):
        scope_account(request, data, model)
    return validate_body(data, model)


def path_uuid(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not PATH_ID.fullmatch(value):
        raise BadPathId(name=name, value=value[:64])
    return value


def _short(value: Any) -> str:
    """``repr`` as in every other 12022 message (``None``, ``'text'``), cut to 64 chars."""
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
