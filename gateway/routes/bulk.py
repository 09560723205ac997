"""Bulk work on streams, v1 and v2: a status for every stream a filter matches (``PATCH
/{1,2}/streams``), export as JSON lines, import of such lines (:mod:`shared.services.bulk`,
:mod:`shared.services.transfer`). Declared before the stream routes: ``/streams/export``
and ``/streams/import`` are not stream ids."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from gateway.api import Api, Response
from gateway.keys import DATABASE, GROUPS, STREAMS
from gateway.parsing import (
    decode_json,
    json_response,
    parse_body,
    parse_query,
    read_body,
    validate_body,
)
from gateway.routes.streams import CREATE_BODY, FILTERS
from shared.core.errors import (
    BadContentType,
    BadJson,
    BadStreamStatus,
    ImportLinesInvalid,
    LunaError,
)
from shared.domain.filters import AccountQuery, QueryUUID
from shared.domain.models.common import GroupName, StrictModel
from shared.domain.roles import Access
from shared.services.bulk import change_status
from shared.services.transfer import MAX_LINES, ImportLine, export_lines, import_streams

api = Api(tag="bulk")

NDJSON = "application/x-ndjson"
#: bytes of exported lines written at once
EXPORT_CHUNK = 64 * 1024


class BulkStatus(StrictModel):
    status: str = Field(json_schema_extra={"enum": ["pause", "pending", "cancel"]})


class Skipped(BaseModel):
    stream_id: str
    status: str = Field(description="The stream's status, left as it was.")
    reason: str


class BulkAnswer(BaseModel):
    changed: int = Field(description="Streams whose status changed (one log row each).")
    skipped: list[Skipped]


class ImportQuery(AccountQuery):
    account_id: QueryUUID | None = Field(
        default=None,
        description="The account the streams are made in (absent: each line's own).",
    )
    status: Literal["pause", "pending"] = Field(
        default="pause", description="The status every imported stream starts in."
    )
    dry_run: bool = Field(
        default=False, description="Validate every line and write nothing (same answer)."
    )


class ImportAnswer(BaseModel):
    created: int
    existing: int = Field(description="Lines whose stream exists already (nothing changed).")


class ExportQuery(AccountQuery):
    pass


EXPORT_DESCRIPTION = (
    "`application/x-ndjson`, streamed, one stream a line: the body `POST /{v}/streams` "
    "accepts, plus its `stream_id` and its `groups` (names); no status or history."
)
IMPORT_DESCRIPTION = (
    "The body is `application/x-ndjson`, lines as the export gives them. Every line is "
    "validated first: when any is bad, nothing is written and the answer (12046) names "
    "each bad line (`lines`: `{line, error}`). Idempotent: a line's key is its "
    "`import_key`, else its `stream_id`; a stream imported before under the same key is "
    f"counted `existing`. At most {MAX_LINES} lines."
)
PATCH_DESCRIPTION = (
    "Every stream matching the filters of `GET /{v}/streams` gets the status, each change "
    "with its log row; a stream it does not apply to is skipped, with the reason."
)


async def read_lines(request: web.Request) -> list[bytes]:
    return (await read_body(request, NDJSON)).split(b"\n")


def _line_body(data: dict[str, Any], query: ImportQuery) -> tuple[str, list[str], dict[str, Any]]:
    """The key, group names and create body of a decoded line (BadJson when it has none)."""
    stream_id, key = data.pop("stream_id", None), data.pop("import_key", None)
    key = key if key is not None else stream_id
    if not isinstance(key, str) or not 0 < len(key) <= 256:
        raise BadJson(message="a line needs an import_key or a stream_id (1 to 256 characters)")
    groups = data.pop("groups", None) or []
    if "group_name" in data and isinstance(groups, list):
        groups = [*groups, data.pop("group_name")]
    names = validate_body({"groups": groups}, _Groups).groups
    body = data | {"status": query.status}
    if query.account_id is not None:
        body["account_id"] = query.account_id
    return key, list(dict.fromkeys(names)), body


class _Groups(StrictModel):
    groups: Annotated[list[GroupName], Field(max_length=100)]


def parse_import(lines: list[bytes], query: ImportQuery, version: int) -> list[ImportLine]:
    """Every line validated; :class:`ImportLinesInvalid` naming each bad one."""
    parsed: list[ImportLine] = []
    bad: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if len(numbered) > MAX_LINES:
        raise BadJson(message=f"at most {MAX_LINES} lines in one import")
    for number, line in numbered:
        try:
            try:
                data = decode_json(line)
            except (UnicodeError, ValueError, RecursionError) as exc:
                raise BadJson(message=f"not a JSON line: {str(exc)[:100]}") from None
            if not isinstance(data, dict):
                raise BadJson(message="a line is a JSON object")
            key, groups, body = _line_body(data, query)
            if key in keys:
                raise BadJson(message=f"the key {key!r} is on line {keys[key]} already")
            keys[key] = number
            model = validate_body(body, CREATE_BODY[version])
            parsed.append(ImportLine(key, model.model_dump(mode="json"), groups))
        except LunaError as error:
            bad.append({"line": number, "error_code": error.error_code, "error": error.detail})
    if bad:
        raise ImportLinesInvalid(bad)
    return parsed


def add_bulk_routes(version: int) -> None:
    prefix = f"/{version}/streams"

    async def patch_streams(request: web.Request) -> web.StreamResponse:
        filters = parse_query(request, FILTERS[version])
        body = await parse_body(request, BulkStatus)
        outcome = await change_status(
            request.app[DATABASE], request.app[STREAMS].changes, filters.mongo_filter(), body.status
        )
        return json_response(outcome.answer())

    async def export_streams(request: web.Request) -> web.StreamResponse:
        filters = parse_query(request, FILTERS[version])
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        chunk: list[bytes] = []
        size = 0
        async for line in export_lines(request.app[DATABASE], filters.mongo_filter(), version):
            chunk.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK:
                await response.write(b"".join(chunk))
                chunk, size = [], 0
        await response.write(b"".join(chunk))
        await response.write_eof()
        return response

    async def import_lines(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, ImportQuery)
        lines = parse_import(await read_lines(request), query, version)
        if query.dry_run:
            return json_response({"created": 0, "existing": 0})
        created, existing = await import_streams(
            request.app[DATABASE],
            request.app[STREAMS].changes,
            request.app[GROUPS],
            version,
            lines,
        )
        return json_response({"created": created, "existing": existing})

    api.add(
        "PATCH",
        prefix,
        patch_streams,
        summary="Change the status of every stream matching the filters",
        description=PATCH_DESCRIPTION,
        query=FILTERS[version],
        body=BulkStatus,
        responses={200: Response("What changed and what was skipped", BulkAnswer)},
        errors=(BadStreamStatus,),
        access=Access.WRITE,
    )
    api.add(
        "GET",
        f"{prefix}/export",
        export_streams,
        summary="Export streams as JSON lines",
        description=EXPORT_DESCRIPTION,
        query=FILTERS[version],
        responses={
            200: Response("One stream a line", content_type=NDJSON, schema={"type": "string"})
        },
        access=Access.READ,
    )
    api.add(
        "POST",
        f"{prefix}/import",
        import_lines,
        summary="Import streams from JSON lines (all or nothing, idempotent)",
        description=IMPORT_DESCRIPTION,
        query=ImportQuery,
        responses={200: Response("Streams made and found", ImportAnswer)},
        errors=(ImportLinesInvalid, BadContentType, BadJson),
        access=Access.WRITE,
    )


for _version in (1, 2):
    add_bulk_routes(_version)
