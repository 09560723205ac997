"""Typed application keys: every resource the gateway's handlers reach, declared once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from gateway.docs import DocsBundle
from gateway.metrics import GatewayMetrics
from gateway.preview_client import PreviewClient
from shared.broker import Broker
from shared.claims import ClaimService
from shared.event_hub import StreamEventHub
from shared.feedback_rpc import FeedbackClient
from shared.groups import GroupService
from shared.mongo import Database
from shared.settings import Settings
from shared.streams.service import StreamService


@dataclass(slots=True)
class Lifecycle:
    """Readiness: turns false the moment SIGTERM arrives, before the server drains."""

    ready: bool = True
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("metrics", GatewayMetrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
DOCS = web.AppKey("docs", DocsBundle)
STREAMS = web.AppKey("streams", StreamService)
GROUPS = web.AppKey("groups", GroupService)
PREVIEWS = web.AppKey("previews", PreviewClient)
CLAIMS = web.AppKey("claims", ClaimService)
FEEDBACK = web.AppKey("feedback", FeedbackClient)
EVENTS = web.AppKey("events", StreamEventHub)
