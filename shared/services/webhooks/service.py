"""The webhook operations of the API: register, list, read, remove, and list deliveries.

A webhook's secret is stored as given (the worker signs with it) and never answered
again: only the answer of the create that made it shows it, when the service made it.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Final

from shared.core.clock import now_utc
from shared.core.errors import BadInputJson, WebhookLimit, WebhookNotFound, WebhookUrlRefused
from shared.core.types import Doc
from shared.domain.documents import format_time
from shared.domain.filters import one_in_account
from shared.services.webhooks.dispatch import new_delivery
from shared.services.webhooks.events import TEST, delivery_body
from shared.services.webhooks.models import DeliveryListQuery, WebhookCreate, WebhookListQuery
from shared.services.webhooks.policy import WebhookUrlPolicy
from shared.store.mongo import Database

#: webhooks one account may have
MAX_PER_ACCOUNT: Final = 50
#: bytes of a secret the service makes (``whsec_`` and their URL-safe base64)
SECRET_BYTES: Final = 32


def webhook_view(doc: Doc) -> Doc:
    return {
        "webhook_id": doc["_id"],
        "account_id": doc["account_id"],
        "url": doc["url"],
        "events": list(doc["events"]),
        "groups": doc.get("groups"),
        "description": doc["description"],
        "create_time": format_time(doc["create_time"]),
    }


def delivery_view(doc: Doc) -> Doc:
    pending = doc["state"] in ("pending", "delivering")
    return {
        "delivery_id": doc["_id"],
        "webhook_id": doc["webhook_id"],
        "event": doc["event"],
        "stream_id": doc["stream_id"],
        "state": doc["state"],
        "attempts": doc["attempts"],
        "status_code": doc.get("status_code"),
        "error": doc.get("error"),
        "create_time": format_time(doc["create_time"]),
        "last_attempt_time": format_time(doc.get("last_attempt_time")),
        "next_attempt_time": format_time(doc.get("due_at")) if pending else None,
        "delivered_time": format_time(doc.get("delivered_time")),
        "body": doc["body"],
    }


class WebhookService:
    def __init__(self, database: Database, policy: WebhookUrlPolicy) -> None:
        self.database = database
        self.policy = policy

    async def create(self, body: WebhookCreate) -> tuple[Doc, str | None]:
        """The stored webhook, and the secret made for it (None when one was given)."""
        try:
            await self.policy.check(body.url)
        except WebhookUrlRefused as refused:
            raise BadInputJson(path="url", message=str(refused)) from None
        count = await self.database.webhooks.count_documents({"account_id": body.account_id})
        if count >= MAX_PER_ACCOUNT:
            raise WebhookLimit(limit=MAX_PER_ACCOUNT)
        made = None if body.secret else "whsec_" + secrets.token_urlsafe(SECRET_BYTES)
        doc: Doc = {
            "_id": str(uuid.uuid4()),
            "account_id": body.account_id,
            "url": body.url,
            "events": list(dict.fromkeys(body.events)),
            "groups": list(dict.fromkeys(body.groups)) if body.groups is not None else None,
            "description": body.description,
            "secret": body.secret or made,
            "create_time": now_utc(),
        }
        await self.database.webhooks.insert_one(doc)
        return doc, made

    async def page(self, query: WebhookListQuery) -> list[Doc]:
        found: Doc = {} if query.account_id is None else {"account_id": query.account_id}
        cursor = (
            self.database.webhooks.find(found, {"secret": 0})
            .sort([("create_time", 1), ("_id", 1)])
            .skip(query.skip)
            .limit(query.page_size)
        )
        return await cursor.to_list()

    async def get(self, webhook_id: str, account_id: str | None) -> Doc:
        doc = await self.database.webhooks.find_one(
            one_in_account(webhook_id, account_id), {"secret": 0}
        )
        if doc is None:
            raise WebhookNotFound(webhook_id=webhook_id)
        return doc

    async def delete(self, webhook_id: str, account_id: str | None) -> None:
        """Remove the webhook, then its deliveries (one in flight may still arrive)."""
        result = await self.database.webhooks.delete_one(one_in_account(webhook_id, account_id))
        if not result.deleted_count:
            raise WebhookNotFound(webhook_id=webhook_id)
        await self.database.webhook_deliveries.delete_many({"webhook_id": webhook_id})

    async def test(self, webhook_id: str, account_id: str | None) -> str:
        """A delivery of event ``test`` (no stream), sent as any other; its id."""
        hook = await self.get(webhook_id, account_id)
        now = now_utc()
        row = {
            "_id": f"test:{uuid.uuid4()}",
            "stream_id": None,
            "account_id": hook["account_id"],
            "status": None,
            "version": None,
            "error": None,
            "log_time": now,
        }
        body = delivery_body(TEST, row, name=None, old_status=None)
        delivery = new_delivery(hook, TEST, row, body, now)
        await self.database.webhook_deliveries.insert_one(delivery)
        return str(delivery["_id"])

    async def deliveries(self, webhook_id: str, query: DeliveryListQuery) -> list[Doc]:
        """A webhook's deliveries, newest first."""
        await self.get(webhook_id, query.account_id)
        found: Doc = {"webhook_id": webhook_id}
        if query.state is not None:
            found["state"] = query.state
        cursor = (
            self.database.webhook_deliveries.find(found)
            .sort([("create_time", -1), ("_id", -1)])
            .skip(query.skip)
            .limit(query.page_size)
        )
        return await cursor.to_list()
