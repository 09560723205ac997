"""Request parsing: query strings, JSON bodies and path ids into models, or a LUNA error.

Nothing here touches storage: a request that fails to parse has written nothing.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.errors import BadContentType, BadInputJson, BadJson, BadPathId, BadQueryParams
from shared.models.common import format_validation_error

M = TypeVar("M", bound=BaseModel)

_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")


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
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        raise BadQueryParams(name=str(loc[0]) if loc else "query") from None


def _decode_json(raw: bytes) -> Any:
    def reject_constant(value: str) -> Any:
        raise ValueError(f"{value} is not valid JSON")

    text = raw.decode("utf-8")
    data = json.loads(text, parse_constant=reject_constant)
    # "\ud800" escapes decode to lone surrogates that no database can store
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    return data


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 12023 for another content type, 12027 for broken JSON."""
    if request.content_type != "application/json":
        raise BadContentType(allowed="application/json")
    raw = await request.read()
    try:
        return _decode_json(raw)
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
        raise BadInputJson(path="", message=f"{_short(data)} is not of type 'object'")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        path, message = format_validation_error(exc)
        raise BadInputJson(path=path, message=message) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    return validate_body(await read_json(request), model)


def path_uuid(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _UUID.fullmatch(value):
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
