"""Webhook routes, v1 and v2 (identical): register, list, read, remove, test, and list a
webhook's deliveries (:mod:`shared.services.webhooks`)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import Api, Response
from gateway.keys import DATABASE, SETTINGS
from gateway.parsing import json_response, parse_body, parse_query, path_uuid
from shared.core.errors import WebhookLimit, WebhookNotFound
from shared.domain.filters import AccountQuery
from shared.domain.roles import Access
from shared.services.webhooks.models import (
    DeliveryList,
    DeliveryListQuery,
    TestDelivery,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookListQuery,
    WebhookView,
)
from shared.services.webhooks.policy import WebhookUrlPolicy
from shared.services.webhooks.service import WebhookService, delivery_view, webhook_view

api = Api(tag="webhooks")

CREATE_DESCRIPTION = (
    "Each delivery is a POST of `{event, stream_id, account_id, name, old_status, "
    "new_status, version, error, time}` with `X-Luna-Streams-Signature: t=<unix seconds>,"
    'v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`, delivered at least once '
    "(retried with backoff, `LUNA_STREAMS_WEBHOOK_MAX_ATTEMPTS` attempts at most)."
)


def _service(request: web.Request) -> WebhookService:
    networks = tuple(request.app[SETTINGS].webhook_allowed_networks)
    return WebhookService(request.app[DATABASE], WebhookUrlPolicy(networks))


async def create_webhook(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, WebhookCreate)
    doc, made = await _service(request).create(body)
    answer = {"webhook_id": doc["_id"]} | ({"secret": made} if made else {})
    return json_response(answer, 201)


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, WebhookListQuery)
    docs = await _service(request).page(query)
    return json_response({"webhooks": [webhook_view(doc) for doc in docs]})


async def get_webhook(request: web.Request) -> web.StreamResponse:
    webhook_id = path_uuid(request, "webhook_id")
    query = parse_query(request, AccountQuery)
    return json_response(webhook_view(await _service(request).get(webhook_id, query.account_id)))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    webhook_id = path_uuid(request, "webhook_id")
    query = parse_query(request, AccountQuery)
    await _service(request).delete(webhook_id, query.account_id)
    return web.Response(status=204)


async def test_webhook(request: web.Request) -> web.StreamResponse:
    webhook_id = path_uuid(request, "webhook_id")
    query = parse_query(request, AccountQuery)
    delivery_id = await _service(request).test(webhook_id, query.account_id)
    return json_response({"delivery_id": delivery_id}, 202)


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    webhook_id = path_uuid(request, "webhook_id")
    query = parse_query(request, DeliveryListQuery)
    docs = await _service(request).deliveries(webhook_id, query)
    return json_response({"deliveries": [delivery_view(doc) for doc in docs]})


def add_webhook_routes(version: int) -> None:
    prefix = f"/{version}/webhooks"
    one = f"{prefix}/{{webhook_id}}"
    api.add(
        "POST",
        prefix,
        create_webhook,
        summary="Register a webhook",
        description=CREATE_DESCRIPTION,
        body=WebhookCreate,
        responses={201: Response("Webhook registered", WebhookCreated)},
        errors=(WebhookLimit,),
        access=Access.WRITE,
    )
    api.add(
        "GET",
        prefix,
        list_webhooks,
        summary="Get webhooks (oldest first; secrets are never shown)",
        query=WebhookListQuery,
        responses={200: Response("Webhooks", WebhookList)},
        access=Access.READ,
    )
    api.add(
        "GET",
        one,
        get_webhook,
        summary="Get the webhook by ID",
        query=AccountQuery,
        responses={200: Response("Webhook", WebhookView)},
        errors=(WebhookNotFound,),
        access=Access.READ,
    )
    api.add(
        "DELETE",
        one,
        delete_webhook,
        summary="Remove the webhook and its deliveries",
        query=AccountQuery,
        responses={204: Response("Webhook removed")},
        errors=(WebhookNotFound,),
        access=Access.WRITE,
    )
    api.add(
        "POST",
        f"{one}/test",
        test_webhook,
        summary="Send the webhook a test delivery (event `test`, no stream)",
        query=AccountQuery,
        responses={202: Response("Test delivery queued", TestDelivery)},
        errors=(WebhookNotFound,),
        access=Access.WRITE,
    )
    api.add(
        "GET",
        f"{one}/deliveries",
        list_deliveries,
        summary="Get the webhook's deliveries (newest first)",
        query=DeliveryListQuery,
        responses={200: Response("Deliveries", DeliveryList)},
        errors=(WebhookNotFound,),
        access=Access.READ,
    )


for _version in (1, 2):
    add_webhook_routes(_version)
