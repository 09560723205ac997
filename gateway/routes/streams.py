"""Stream routes, v1 and v2: parse, call :class:`shared.services.streams.StreamService`,
serialize. The two versions differ only in their body models and stream views."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.api import Api, Response
from gateway.keys import STREAMS
from gateway.parsing import json_response, parse_body, parse_query, path_uuid
from gateway.responses import (
    StreamCountResponse,
    StreamCreated,
    StreamListV1,
    StreamListV2,
    StreamV1,
    StreamV2,
)
from shared.core.errors import (
    BadStreamStatus,
    CannotCancelFinished,
    CannotStopInProgress,
    GroupNameNotFound,
    GroupNotFound,
    StreamNotConvertible,
    StreamNotFound,
)
from shared.domain.documents import stream_view
from shared.domain.filters import (
    AccountQuery,
    StreamFiltersV1,
    StreamFiltersV2,
    StreamListQueryV1,
    StreamListQueryV2,
)
from shared.domain.models import StreamCreateV1, StreamCreateV2, StreamPatch, StreamsDeleteRequest

api = Api(tag="streams")

CREATE_BODY: dict[int, type[BaseModel]] = {1: StreamCreateV1, 2: StreamCreateV2}
LIST_QUERY: dict[int, type[StreamListQueryV2]] = {1: StreamListQueryV1, 2: StreamListQueryV2}
FILTERS: dict[int, type[StreamFiltersV2]] = {1: StreamFiltersV1, 2: StreamFiltersV2}
VIEW: dict[int, type[BaseModel]] = {1: StreamV1, 2: StreamV2}
LIST_VIEW: dict[int, type[BaseModel]] = {1: StreamListV1, 2: StreamListV2}


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def add_stream_routes(version: int) -> None:
    prefix = f"/{version}/streams"

    async def create_stream(request: web.Request) -> web.StreamResponse:
        body = await parse_body(request, CREATE_BODY[version])
        doc = await request.app[STREAMS].create(version, _dump(body))
        return json_response({"stream_id": doc["_id"], "version": doc["version"]}, status=201)

    async def list_streams(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, LIST_QUERY[version])
        docs = await request.app[STREAMS].page(query)
        return json_response({"streams": [stream_view(doc, version) for doc in docs]})

    async def delete_streams(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, AccountQuery)
        body = await parse_body(request, StreamsDeleteRequest)
        await request.app[STREAMS].delete_many(query.account_id, body.stream_ids, body.names)
        return web.Response(status=204)

    async def count_streams(request: web.Request) -> web.StreamResponse:
        filters = parse_query(request, FILTERS[version])
        count = await request.app[STREAMS].count(filters)
        return json_response({"streams_count": count})

    async def get_stream(request: web.Request) -> web.StreamResponse:
        stream_id = path_uuid(request, "stream_id")
        query = parse_query(request, AccountQuery)
        doc = await request.app[STREAMS].get(stream_id, query.account_id)
        return json_response(stream_view(doc, version))

    async def patch_stream(request: web.Request) -> web.StreamResponse:
        stream_id = path_uuid(request, "stream_id")
        query = parse_query(request, AccountQuery)
        body = await parse_body(request, StreamPatch)
        await request.app[STREAMS].patch(
            stream_id, query.account_id, description=body.description, status=body.status
        )
        return web.Response(status=204)

    async def put_stream(request: web.Request) -> web.StreamResponse:
        stream_id = path_uuid(request, "stream_id")
        body = await parse_body(request, CREATE_BODY[version])
        new_version = await request.app[STREAMS].replace(stream_id, version, _dump(body))
        return json_response({"stream_id": stream_id, "version": new_version})

    async def delete_stream(request: web.Request) -> web.StreamResponse:
        stream_id = path_uuid(request, "stream_id")
        query = parse_query(request, AccountQuery)
        await request.app[STREAMS].delete(stream_id, query.account_id)
        return web.Response(status=204)

    view, list_view = VIEW[version], LIST_VIEW[version]
    not_convertible = (StreamNotConvertible,)
    api.add(
        "POST",
        prefix,
        create_stream,
        summary="Create stream",
        body=CREATE_BODY[version],
        responses={201: Response("Stream created", StreamCreated)},
        errors=(BadStreamStatus, GroupNameNotFound, GroupNotFound),
    )
    api.add(
        "GET",
        prefix,
        list_streams,
        summary="Get streams according to filters, oldest first",
        query=LIST_QUERY[version],
        responses={200: Response("Streams", list_view)},
        errors=not_convertible,
    )
    api.add(
        "DELETE",
        prefix,
        delete_streams,
        summary="Delete streams whose id or name matches (unknown ones are ignored)",
        query=AccountQuery,
        body=StreamsDeleteRequest,
        responses={204: Response("Streams deleted")},
    )
    api.add(
        "GET",
        f"{prefix}/count",
        count_streams,
        summary="Count streams according to filters",
        query=FILTERS[version],
        responses={200: Response("Count", StreamCountResponse)},
    )
    api.add(
        "GET",
        f"{prefix}/{{stream_id}}",
        get_stream,
        summary="Get the stream by ID",
        query=AccountQuery,
        responses={200: Response("Stream", view)},
        errors=(StreamNotFound, *not_convertible),
    )
    api.add(
        "PATCH",
        f"{prefix}/{{stream_id}}",
        patch_stream,
        summary="Update stream description and/or status",
        query=AccountQuery,
        body=StreamPatch,
        responses={204: Response("Stream updated")},
        errors=(StreamNotFound, BadStreamStatus, CannotStopInProgress, CannotCancelFinished),
    )
    api.add(
        "PUT",
        f"{prefix}/{{stream_id}}",
        put_stream,
        summary="Replace the stream (version + 1; it passes through 'restart')",
        body=CREATE_BODY[version],
        responses={200: Response("Stream replaced", StreamCreated)},
        errors=(StreamNotFound, BadStreamStatus, GroupNameNotFound),
    )
    api.add(
        "DELETE",
        f"{prefix}/{{stream_id}}",
        delete_stream,
        summary="Remove the stream",
        query=AccountQuery,
        responses={204: Response("Stream removed")},
        errors=(StreamNotFound,),
    )


for _version in (1, 2):
    add_stream_routes(_version)
