"""The webhook API's bodies, queries and answers (v1 and v2 share them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from shared.domain.filters import AccountQuery, Page
from shared.domain.models.common import GroupName, StrictModel, UUIDStr
from shared.services.webhooks.events import EVENTS, WebhookEvent

#: a secret given by the client: long enough to be one, short enough to store
Secret = Annotated[str, StringConstraints(min_length=16, max_length=256)]
DeliveryState = Literal["pending", "delivering", "delivered", "failed"]


class WebhookCreate(StrictModel):
    """``POST /{1,2}/webhooks``."""

    account_id: UUIDStr
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Where deliveries are POSTed: http(s), no user info, a public address "
        "unless inside LUNA_STREAMS_WEBHOOK_ALLOWED_NETWORKS."
    )
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(EVENTS))] = Field(
        description="What to be told: the statuses a stream enters, and "
        "`autorestart_exhausted`, `created`, `deleted`."
    )
    secret: Secret | None = Field(
        default=None,
        description="The HMAC-SHA256 key of the signatures (16 to 256 characters); "
        "when absent, one is made and answered once.",
    )
    description: Annotated[str, StringConstraints(max_length=128)] = ""
    groups: Annotated[list[GroupName], Field(max_length=100)] | None = Field(
        default=None,
        description="Only streams of one of these groups (by name); absent: every stream "
        "of the account. A deleted stream's groups are not known: such a webhook is not "
        "told of deletions.",
    )


class WebhookListQuery(AccountQuery, Page):
    pass


class DeliveryListQuery(AccountQuery, Page):
    state: DeliveryState | None = Field(default=None, description="Only deliveries in this state.")


class WebhookCreated(BaseModel):
    webhook_id: str
    secret: str | None = Field(
        default=None, description="The secret made for the webhook (only when none was given)."
    )


class WebhookView(BaseModel):
    webhook_id: str
    account_id: str
    url: str
    events: list[WebhookEvent]
    groups: list[str] | None
    description: str
    create_time: str


class TestDelivery(BaseModel):
    delivery_id: str


class WebhookList(BaseModel):
    webhooks: list[WebhookView]


class DeliveryView(BaseModel):
    delivery_id: str
    webhook_id: str
    event: WebhookEvent | Literal["test"]
    stream_id: str | None
    state: DeliveryState
    attempts: int = Field(description="Attempts made so far.")
    status_code: int | None = Field(description="The HTTP status of the last attempt.")
    error: str | None = Field(description="Why the last attempt failed, when it did.")
    create_time: str
    last_attempt_time: str | None
    next_attempt_time: str | None
    delivered_time: str | None
    body: str = Field(description="The JSON body posted.")


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]
