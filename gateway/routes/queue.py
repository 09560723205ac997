"""Processing routes: peek at the queue, claim from it, and send feedback (v1 and v2)."""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import Api, Response
from gateway.keys import CLAIMS, FEEDBACK, METRICS, SETTINGS
from gateway.parsing import json_response, parse_body, parse_query
from gateway.preview_client import check_feedback_previews
from gateway.responses import StreamListV1, StreamListV2
from shared.core.errors import (
    DependencyUnavailable,
    FeedbackOverloaded,
    FeedbackTimeout,
    StreamNotConvertible,
)
from shared.domain.documents import stream_view
from shared.domain.feedback_batch import FeedbackBatch
from shared.domain.filters import LIST_FILTER_NOTE, QueryGroupName, QueryUUID, StreamName
from shared.domain.models import INT32_MAX, FeedbackRequest, QueueClaimFilters, QueueClaimRequest
from shared.domain.roles import Access
from shared.services.claims import QueueFilters

api = Api(tag="processing")

LIST_VIEW: dict[int, type[BaseModel]] = {1: StreamListV1, 2: StreamListV2}


class QueuePeekQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(
        ge=1,
        le=INT32_MAX,
        description="Maximum number of streams to show (the reference sets no upper bound; "
        "up to 2147483647, as the claim's `limit`).",
    )
    stream_ids: list[QueryUUID] | None = Field(default=None, description=LIST_FILTER_NOTE)
    names: list[StreamName] | None = Field(default=None, description=LIST_FILTER_NOTE)
    group_ids: list[QueryUUID] | None = Field(default=None, description=LIST_FILTER_NOTE)
    group_names: list[QueryGroupName] | None = Field(default=None, description=LIST_FILTER_NOTE)


class FeedbackEntry(BaseModel):
    stream_id: str
    status: str = Field(description="in_progress, done, failure; or the current status")
    version: int


class FeedbackOutcome(BaseModel):
    modified: list[FeedbackEntry]
    unmodified: list[FeedbackEntry]


class FeedbackResponse(BaseModel):
    streams: FeedbackOutcome


def _once(items: list[str] | None) -> list[str] | None:
    return None if items is None else list(dict.fromkeys(items))


def queue_filters(given: QueuePeekQuery | QueueClaimFilters, version: int) -> QueueFilters:
    """The filters of a peek or a claim, each list without duplicates."""
    return QueueFilters(
        stream_ids=_once(given.stream_ids),
        names=_once(given.names),
        group_ids=_once(given.group_ids),
        group_names=_once(given.group_names),
        api_version=version,
    )


def add_queue_routes(version: int) -> None:
    prefix = f"/{version}/streams/processing"

    async def peek_queue(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, QueuePeekQuery)
        docs = await request.app[CLAIMS].peek(queue_filters(query, version), query.limit)
        return json_response({"streams": [stream_view(doc, version) for doc in docs]})

    async def claim_streams(request: web.Request) -> web.StreamResponse:
        body = await parse_body(request, QueueClaimRequest)
        started = time.perf_counter()
        docs = await request.app[CLAIMS].claim(queue_filters(body.filters, version), body.limit)
        request.app[METRICS].observe_claim(len(docs), time.perf_counter() - started)
        return json_response({"streams": [stream_view(doc, version) for doc in docs]})

    async def post_feedback(request: web.Request) -> web.StreamResponse:
        received_at = time.time()
        body = await parse_body(request, FeedbackRequest)
        check_feedback_previews(request, request.app[SETTINGS], body.streams)
        batch = FeedbackBatch(streams=body.streams, received_at=received_at)
        reply = await request.app[FEEDBACK].call(batch)
        # the worker's outcome, as it was validated: serialised once more, for the agent
        return web.Response(body=reply.body(), content_type="application/json", charset="utf-8")

    list_view = LIST_VIEW[version]
    api.add(
        "GET",
        f"{prefix}/queue",
        peek_queue,
        summary="See the pending streams in queue order (changes nothing)",
        query=QueuePeekQuery,
        responses={200: Response("Pending streams", list_view)},
        access=Access.QUEUE,
        errors=(StreamNotConvertible,),
        operation_id=f"getQueueV{version}",
    )
    api.add(
        "POST",
        f"{prefix}/queue",
        claim_streams,
        summary="Receive streams from the queue: they become in_progress",
        description="Takes up to `limit` pending streams matching the filters (AND "
        "across kinds, OR within a list) and hands them to the caller; fewer, or none, "
        "when no more are pending or LUNA_STREAMS_MAX_ACTIVE_STREAMS is reached.",
        body=QueueClaimRequest,
        responses={200: Response("Claimed streams", list_view)},
        access=Access.PROCESS,
        errors=(StreamNotConvertible,),
        operation_id=f"postQueueV{version}",
    )
    api.add(
        "POST",
        f"{prefix}/feedback",
        post_feedback,
        summary="Post information about streams processing",
        description="Applied only to streams in_progress at the version given; the "
        "others come back unmodified with their current status and version "
        "(not_found for a deleted stream).",
        body=FeedbackRequest,
        responses={200: Response("Outcome", FeedbackResponse)},
        access=Access.PROCESS,
        errors=(FeedbackOverloaded, FeedbackTimeout, DependencyUnavailable),
        operation_id=f"postStreamsFeedbackV{version}",
    )


for _version in (1, 2):
    add_queue_routes(_version)
