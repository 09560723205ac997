"""Building blocks shared by every request model: the strict base, reusable field types,
the objects common to v1 and v2 (location, autorestart, preview, video info), and the
translation of a pydantic error into the LUNA ``Path: '…', message: '…'`` pair.

Every model refuses unknown fields and converts nothing (``"1"`` is not an integer, ``true``
is not ``1``); JSON numbers keep their kind (``40`` stays ``40``, ``0.5`` stays ``0.5``).
Numeric fields the seed leaves unbounded above are capped at ``INT32_MAX`` so that no value
the service accepts can overflow storage or an agent.

This module is the one home of the id and name patterns and of the date-time format, for
bodies, query strings (:data:`QueryTime`) and path ids alike; the status sets live in
:mod:`shared.domain.statuses`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, PydanticKnownError, core_schema

from shared.domain.statuses import CREATE_STATUSES, PATCH_STATUSES

#: a lowercase uuid: every id in bodies, query strings and paths
UUID_PATTERN: Final = r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$"
GROUP_NAME_PATTERN: Final = r"^[a-zA-Z0-9_\-]{1,128}$"
#: an RFC 3339 ``date-time`` (seconds and offset required; no unix timestamps), in bodies
#: and query strings alike
DATE_TIME_PATTERN: Final = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
INT32_MAX: Final = 2_147_483_647
#: bounds of what an agent writes into a stream with its feedback (the reference documents
#: none; a real agent stays far below them): ``error`` text, a preview URL, a date-time
ERROR_MAX_LENGTH: Final = 4096
URL_MAX_LENGTH: Final = 2048
DATE_TIME_MAX_LENGTH: Final = 64

STREAM_STATUSES_CREATE: Final = CREATE_STATUSES
STREAM_STATUSES_PATCH: Final = PATCH_STATUSES


class StrictModel(BaseModel):
    """Base of every request model: unknown fields refused, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class JsonNumber:
    """A JSON ``number``: an int or a float (never a bool), kept as given, within bounds."""

    ge: int | float | None = None
    le: int | float | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        number = core_schema.union_schema(
            [
                core_schema.int_schema(strict=True),
                core_schema.float_schema(strict=True, allow_inf_nan=False),
            ],
            custom_error_type="float_type",
            mode="left_to_right",
        )
        return core_schema.no_info_after_validator_function(self._check_bounds, number)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value: JsonSchemaValue = {"type": "number"}
        if self.ge is not None:
            value["minimum"] = self.ge
        if self.le is not None:
            value["maximum"] = self.le
        return value

    def _check_bounds(self, value: int | float) -> int | float:
        if self.ge is not None and value < self.ge:
            raise PydanticKnownError("greater_than_equal", {"ge": self.ge})
        if self.le is not None and value > self.le:
            raise PydanticKnownError("less_than_equal", {"le": self.le})
        return value


def _reject_bool(value: Any) -> Any:
    """``Literal[0, 1]`` alone would take ``true`` for ``1``; JSON booleans are not integers."""
    if isinstance(value, bool):
        raise PydanticKnownError("int_type")
    return value


NotBool: Final = BeforeValidator(_reject_bool)

_DATE_TIME = re.compile(DATE_TIME_PATTERN)


def _check_date_time(value: str) -> str:
    """RFC 3339 ``date-time`` (the seed's ``string <date-time>``)."""
    valid = _DATE_TIME.match(value) is not None
    if valid:
        try:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            valid = False
    if not valid:
        raise PydanticCustomError(
            "format", "Input should be a 'date-time'", {"format": "date-time"}
        )
    return value


def _query_date_time(value: Any) -> Any:
    """A query string's time: only RFC 3339 date-times (``1700000000`` is not one)."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 date-time")
    return value


def _in_utc(value: datetime) -> datetime:
    """A time MongoDB can compare: its UTC form must exist (0001-01-01T00:00+09:30 has
    none, it is before year 1)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range") from None


UUIDStr = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
GroupName = Annotated[str, StringConstraints(pattern=GROUP_NAME_PATTERN)]
DateTimeStr = Annotated[
    str, StringConstraints(max_length=DATE_TIME_MAX_LENGTH), AfterValidator(_check_date_time)
]
#: the one time type of every query filter (streams, logs): RFC 3339, in range, in UTC
QueryTime = Annotated[AwareDatetime, BeforeValidator(_query_date_time), AfterValidator(_in_utc)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveCount = Annotated[int, Field(ge=1, le=INT32_MAX)]
Score = Annotated[int | float, JsonNumber(ge=0, le=1)]
NonNegativeNumber = Annotated[int | float, JsonNumber(ge=0, le=INT32_MAX)]
StreamName = Annotated[str, StringConstraints(max_length=128)]
StreamDescription = Annotated[str, StringConstraints(max_length=512)]
LocationText = Annotated[str, StringConstraints(max_length=36)]


class GeoPosition(StrictModel):
    longitude: Annotated[int | float, JsonNumber(ge=-180, le=180)]
    latitude: Annotated[int | float, JsonNumber(ge=-90, le=90)]


class Location(StrictModel):
    """``location_to_be_created``: every part optional; an absent part is stored as null."""

    city: LocationText | None = None
    area: LocationText | None = None
    district: LocationText | None = None
    street: LocationText | None = None
    house_number: LocationText | None = None
    geo_position: GeoPosition | None = None


class AutorestartSettings(StrictModel):
    """``stream_autorestart`` as given on create/replace (the state fields are read-only)."""

    restart: Annotated[Literal[0, 1], NotBool] = 0
    attempt_count: Annotated[int, Field(ge=1, le=100)] = 10
    delay: Annotated[int, Field(ge=1, le=600)] = 60


class PreviewUrl(StrictModel):
    url: Annotated[
        str,
        StringConstraints(max_length=URL_MAX_LENGTH),
        Field(description=f"At most {URL_MAX_LENGTH} characters."),
    ]


class PreviewUrls(StrictModel):
    """Where an agent serves the stream's previews (``uri-reference`` strings)."""

    live: PreviewUrl | None = None
    last_frame: PreviewUrl | None = None


class VideoInfo(StrictModel):
    """What an agent reports about the video it reads (feedback ``video_info``)."""

    width: Count
    height: Count
    frame_rate: NonNegativeNumber
    bit_rate: Count
    gop_size: Count
    start_time: DateTimeStr
    duration: NonNegativeNumber | None = None
    progress: Annotated[int | float, JsonNumber(ge=0, le=1)] | None = None


# --- pydantic errors as LUNA / python-jsonschema messages -------------------------------

# Fields whose value is a tagged union: pydantic puts the chosen tag after them in ``loc``;
# the value is the key that selects the member (None: chosen by which keys are present).
_UNION_FIELDS: Final[dict[str, str | None]] = {
    "data": "type",
    "roi": "mode",
    "droi": "mode",
    "authorization": None,
}
_LOC_NOISE = re.compile(
    r"^(function-(after|before|wrap|plain)\[|nullable\[|list\[|dict\[|tagged-union\[|union\[|"
    r"lax-or-strict\[|json-or-python\[|is-instance\[|(int|float|str|bool|none)$)"
)
_JSON_TYPES: Final = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "finite_number": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "model_type": "object",
    "model_attributes_type": "object",
    "dict_type": "object",
    "none_required": "null",
}

Loc = tuple[int | str, ...]


def _json_path(loc: Loc) -> list[int | str]:
    """``loc`` without the union tags pydantic inserts: the user's JSON path."""
    path: list[int | str] = []
    after_union = False
    for item in loc:
        if after_union and isinstance(item, str):
            after_union = False
            continue
        after_union = False
        if isinstance(item, str) and _LOC_NOISE.match(item):
            continue
        path.append(item)
        after_union = isinstance(item, str) and item in _UNION_FIELDS
    return path


def _dotted(path: list[int | str]) -> str:
    return ".".join(str(item) for item in path)


def _as_list(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` as jsonschema's ``['a', 'b', 'c']``."""
    try:
        values = ast.literal_eval("[" + expected.replace(" or ", ", ") + "]")
    except (ValueError, SyntaxError):
        return f"[{expected}]"
    return repr(values)


#: a value quoted back in a message is cut past this many characters (a 4 MB string an
#: agent sent is not sent back whole), and the message then says how long it was
QUOTE_MAX = 1024
QUOTE_KEPT = 61


def _shown(value: Any) -> str:
    """``repr(value)`` as jsonschema quotes it, cut to :data:`QUOTE_MAX` characters."""
    text = repr(value)
    return text if len(text) <= QUOTE_MAX else text[:QUOTE_KEPT] + "..."


def _length_message(value: Any, limit: int, *, too_long: bool) -> str:
    shown = _shown(value)
    if too_long:
        message = f"{shown} is expected to be empty" if limit == 0 else f"{shown} is too long"
        if shown.endswith("...") and isinstance(value, str | list):
            unit = "characters" if isinstance(value, str) else "items"
            message += f" ({len(value)} {unit}, at most {limit})"
        return message
    return f"{shown} should be non-empty" if limit == 1 else f"{shown} is too short"


def _bound_message(kind: str, value: Any, ctx: dict[str, Any]) -> str:
    if kind == "greater_than_equal":
        return f"{_shown(value)} is less than the minimum of {ctx['ge']!r}"
    if kind == "less_than_equal":
        return f"{_shown(value)} is greater than the maximum of {ctx['le']!r}"
    if kind == "greater_than":
        return f"{_shown(value)} is less than or equal to the minimum of {ctx['gt']!r}"
    return f"{_shown(value)} is greater than or equal to the maximum of {ctx['lt']!r}"


def _union_message(error: Any, path: list[int | str]) -> tuple[list[int | str], str]:
    """A bad or missing tag of a tagged union: reported on the tag key, as an enum."""
    value = error["input"]
    ctx = error.get("ctx", {})
    key = _UNION_FIELDS.get(str(path[-1])) if path else None
    if not isinstance(value, dict) or key is None:
        return path, f"{_shown(value)} is not of type 'object'"
    if error["type"] == "union_tag_not_found":
        return path, f"{key!r} is a required property"
    return [*path, key], f"{_shown(value.get(key))} is not one of {_as_list(ctx['expected_tags'])}"


def _message(error: Any, path: list[int | str]) -> tuple[list[int | str], str]:
    kind: str = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return path[:-1], f"{path[-1]!r} is a required property"
    if kind in _JSON_TYPES:
        return path, f"{_shown(value)} is not of type {_JSON_TYPES[kind]!r}"
    if kind in ("string_too_long", "too_long"):
        return path, _length_message(value, ctx["max_length"], too_long=True)
    if kind in ("string_too_short", "too_short"):
        return path, _length_message(value, ctx["min_length"], too_long=False)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return path, _bound_message(kind, value, ctx)
    if kind == "string_pattern_mismatch":
        return path, f"{_shown(value)} does not match {ctx['pattern']!r}"
    if kind == "literal_error":
        return path, f"{_shown(value)} is not one of {_as_list(ctx['expected'])}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _union_message(error, path)
    if kind == "format":
        return path, f"{_shown(value)} is not a {ctx['format']!r}"
    return path, str(error["msg"])


def format_validation_error(exc: ValidationError) -> tuple[str, str]:
    """``(path, message)`` of the first error, as LUNA (python-jsonschema) words them.

    The path is dotted (``data.roi.x``, ``data.analytics.0.droi``; ``''`` for the body
    itself). Unknown fields next to the first one are reported together, as jsonschema's
    ``additionalProperties`` does.
    """
    errors = exc.errors()
    if not errors:
        return "", str(exc)
    first = errors[0]
    path = _json_path(first["loc"])
    if first["type"] == "extra_forbidden":
        parent = path[:-1]
        extras = sorted(
            str(other[-1])
            for other in (_json_path(e["loc"]) for e in errors if e["type"] == "extra_forbidden")
            if other[:-1] == parent
        )
        verb = "was" if len(extras) == 1 else "were"
        names = ", ".join(repr(name) for name in extras)
        if len(names) > QUOTE_MAX:
            names = names[:QUOTE_KEPT] + "..."
        return _dotted(parent), f"Additional properties are not allowed ({names} {verb} unexpected)"
    where, message = _message(first, path)
    return _dotted(where), message
