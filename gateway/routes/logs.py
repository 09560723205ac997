"""Stream log routes, v1 and v2 (identical): list with filters, delete old rows."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from gateway.api import Api, Response
from gateway.keys import DATABASE
from gateway.parsing import json_response, parse_query
from shared.domain.models import PreviewUrls, VideoInfo
from shared.domain.statuses import LoggedStatus
from shared.services.logs import DeleteLogsQuery, LogsQuery, StreamLogService

api = Api(tag="logs")


def _nothing_required(schema: JsonDict) -> None:
    schema.pop("required", None)


class StreamLog(BaseModel):
    """A stream log row; only the fields named in ``targets`` are present."""

    model_config = ConfigDict(json_schema_extra=_nothing_required)

    stream_id: str = Field(description="Stream ID.")
    log_time: str = Field(description="When the row was written (RFC 3339).")
    error: str | None = Field(description="The stream's error at that time.")
    status: LoggedStatus = Field(description="The status the stream entered.")
    video_info: VideoInfo | None = Field(description="The stream's video info at that time.")
    version: int = Field(description="Stream version.")
    preview: PreviewUrls | None = Field(description="The stream's preview URLs at that time.")


class StreamLogList(BaseModel):
    logs: list[StreamLog]


class LogsDeleted(BaseModel):
    deleted_count: int


def _service(request: web.Request) -> StreamLogService:
    return StreamLogService(request.app[DATABASE])


async def list_logs(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, LogsQuery)
    logs: list[dict[str, Any]] = await _service(request).list(query)
    return json_response({"logs": logs})


async def delete_logs(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, DeleteLogsQuery)
    deleted = await _service(request).delete_older_than(query.bound(), query.account_id)
    return json_response({"deleted_count": deleted})


for _version in (1, 2):
    _path = f"/{_version}/streams/logs"
    api.add(
        "GET",
        _path,
        list_logs,
        summary="Get stream logs according to filters, newest first",
        query=LogsQuery,
        responses={200: Response("Stream logs", StreamLogList)},
    )
    api.add(
        "DELETE",
        _path,
        delete_logs,
        summary="Delete stream logs older than the bound, except each stream's newest log",
        description="The same rule as the periodic cleanup (LUNA_STREAMS_LOGS_CLEAR_INTERVAL). "
        "`account_id` (an extension of the reference API) limits it to that account's logs.",
        query=DeleteLogsQuery,
        responses={200: Response("How many logs were deleted", LogsDeleted)},
    )
