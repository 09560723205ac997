"""Typed application keys: every resource the gateway's handlers reach, declared once."""

from __future__ import annotations

from aiohttp import web

from gateway.docs import DocsBundle
from gateway.gatekeeper import Gatekeeper
from gateway.metrics import GatewayMetrics
from gateway.preview_client import PreviewClient
from shared.core.settings import GatewaySettings
from shared.domain.roles import Principal
from shared.messaging.broker import Broker
from shared.messaging.rpc import FeedbackClient
from shared.runtime.lifecycle import Readiness
from shared.services.claims import ClaimService
from shared.services.event_hub import StreamEventHub
from shared.services.groups import GroupService
from shared.services.streams import StreamService
from shared.store.mongo import Database

SETTINGS = web.AppKey("settings", GatewaySettings)
DATABASE = web.AppKey("database", Database)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("metrics", GatewayMetrics)
#: false from the moment SIGTERM arrives (:mod:`shared.runtime.lifecycle`): /healthcheck answers 503
READINESS = web.AppKey("readiness", Readiness)
DOCS = web.AppKey("docs", DocsBundle)
STREAMS = web.AppKey("streams", StreamService)
GROUPS = web.AppKey("groups", GroupService)
PREVIEWS = web.AppKey("previews", PreviewClient)
CLAIMS = web.AppKey("claims", ClaimService)
FEEDBACK = web.AppKey("feedback", FeedbackClient)
EVENTS = web.AppKey("events", StreamEventHub)
#: who the request acts as (:mod:`gateway.auth`); absent on a public route without credential
PRINCIPAL = web.RequestKey("principal", Principal)
#: the account a request named in its query or body (for the audit trail)
ACCOUNT_NAMED = web.RequestKey("account_named", str)
GATE = web.AppKey("gate", Gatekeeper)
