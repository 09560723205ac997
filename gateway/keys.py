"""Typed application keys: every resource the gateway's handlers reach, declared once."""

from __future__ import annotations

from aiohttp import web

from gateway.docs import DocsBundle
from gateway.gatekeeper import Gatekeeper
from gateway.metrics import GatewayMetrics
from gateway.preview_client import PreviewClient
from shared.access.roles import Principal
from shared.broker import Broker
from shared.claims import ClaimService
from shared.event_hub import StreamEventHub
from shared.feedback_rpc import FeedbackClient
from shared.groups import GroupService
from shared.lifecycle import Readiness
from shared.mongo import Database
from shared.settings import GatewaySettings
from shared.streams.service import StreamService

SETTINGS = web.AppKey("settings", GatewaySettings)
DATABASE = web.AppKey("database", Database)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("metrics", GatewayMetrics)
#: false from the moment SIGTERM arrives (:mod:`shared.lifecycle`): /healthcheck answers 503
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
