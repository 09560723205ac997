"""The application factory: settings, resources, middlewares and routes, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.api import Api, all_operations, register
from gateway.auth import access_middleware
from gateway.docs import build_docs
from gateway.gatekeeper import Gatekeeper
from gateway.keys import (
    BROKER,
    CLAIMS,
    DATABASE,
    DOCS,
    EVENTS,
    FEEDBACK,
    GATE,
    GROUPS,
    METRICS,
    PREVIEWS,
    READINESS,
    SETTINGS,
    STREAMS,
)
from gateway.metrics import GatewayMetrics
from gateway.middlewares import (
    error_middleware,
    host_middleware,
    metrics_middleware,
    request_id_middleware,
    tracing_middlewares,
)
from gateway.openapi import build_spec
from gateway.preview_client import PreviewClient
from gateway.probes import probes_context
from gateway.routes import (
    access,
    bulk,
    console,
    events,
    groups,
    logs,
    preview,
    queue,
    service,
    streams,
    webhooks,
)
from shared.core.settings import GatewaySettings
from shared.messaging.broker import Broker, open_configured_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.messaging.rpc import FeedbackClient
from shared.runtime.lifecycle import Readiness
from shared.services.claims import ClaimService
from shared.services.event_hub import StreamEventHub
from shared.services.groups import GroupService
from shared.services.streams import StreamService
from shared.store.changes import StreamChanges
from shared.store.mongo import open_configured_database

# order matters: fixed paths (/1/streams/count, /logs, /processing/...) before /{stream_id}
APIS: list[Api] = [
    console.api,
    access.api,
    service.api,
    groups.api,
    queue.api,
    logs.api,
    preview.api,
    events.api,
    webhooks.api,
    bulk.api,
    streams.api,
]


#: 1000 names of 128 characters, URL-encoded, plus the rest of the request line
MAX_REQUEST_LINE = 1024 * 1024


async def database_context(app: web.Application) -> AsyncIterator[None]:
    app[DATABASE] = await open_configured_database(app[SETTINGS])
    yield
    await app[DATABASE].close()


async def access_context(app: web.Application) -> AsyncIterator[None]:
    """The database of API tokens and of the audit trail (LUNA_STREAMS_AUTH)."""
    app[GATE].open(app[DATABASE])
    yield
    await app[GATE].close()


async def broker_context(app: web.Application) -> AsyncIterator[None]:
    if BROKER in app:  # given to create_app (the tests' in-memory broker): its owner closes it
        yield
        return
    app[BROKER] = await open_configured_broker(app[SETTINGS])
    yield
    await app[BROKER].close()


async def preview_client_context(app: web.Application) -> AsyncIterator[None]:
    """Outgoing HTTP: previews fetched from the agents, in pools of their own."""
    app[PREVIEWS] = PreviewClient(app[SETTINGS])
    yield
    await app[PREVIEWS].close()


async def services_context(app: web.Application) -> AsyncIterator[None]:
    settings, database, broker = app[SETTINGS], app[DATABASE], app[BROKER]
    publisher = BrokerTokenPublisher(broker)
    changes = StreamChanges(database, publisher)
    app[STREAMS] = StreamService(database, changes)
    app[GROUPS] = GroupService(database, changes)
    app[CLAIMS] = ClaimService(
        database,
        broker,
        changes,
        settings.max_active_streams,
        prefetch=settings.claim_prefetch,
        hold=settings.claim_hold,
    )
    app[FEEDBACK] = FeedbackClient(broker, settings.feedback_timeout)
    await app[FEEDBACK].start()
    yield
    await app[CLAIMS].close()


async def events_context(app: web.Application) -> AsyncIterator[None]:
    """Live stream events; its change stream opens with the first subscriber."""
    settings = app[SETTINGS]
    app[EVENTS] = StreamEventHub(
        app[DATABASE],
        max_subscribers=settings.events_max_connections,
        max_per_client=settings.events_max_per_client,
        buffer_size=settings.events_buffer,
        history_size=settings.events_history,
    )
    yield
    await app[EVENTS].close()


async def end_event_streams(app: web.Application) -> None:
    """At shutdown, before the server waits for handlers: end the endless responses."""
    if EVENTS in app:
        await app[EVENTS].close()


def create_app(
    settings: GatewaySettings, readiness: Readiness | None = None, broker: Broker | None = None
) -> web.Application:
    """The gateway; ``readiness`` is its process's (:mod:`shared.runtime.lifecycle`), else ready;
    ``broker``, an open broker to use instead of connecting to ``settings.amqp_url``."""
    app = web.Application(
        client_max_size=settings.max_body_size,
        # the API allows 1000 ids (or names) in a query string: long request lines
        handler_args={
            "max_line_size": MAX_REQUEST_LINE,
            "max_field_size": 65536,
            # from the connection's start: a request head not complete by then closes it
            "keepalive_timeout": settings.header_timeout,
        },
        middlewares=[
            request_id_middleware,
            *tracing_middlewares(),
            metrics_middleware,
            error_middleware,
            host_middleware,
            access_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = GatewayMetrics()
    app[READINESS] = readiness or Readiness(ready=True)
    app[GATE] = Gatekeeper(settings)
    if broker is not None:
        app[BROKER] = broker
    register(app, APIS)
    app[DOCS] = build_docs(build_spec(all_operations(APIS)))
    app.cleanup_ctx.append(database_context)
    app.cleanup_ctx.append(access_context)
    app.cleanup_ctx.append(broker_context)
    app.cleanup_ctx.append(services_context)
    app.cleanup_ctx.append(preview_client_context)
    app.cleanup_ctx.append(events_context)
    app.cleanup_ctx.append(probes_context)
    app.on_shutdown.append(end_event_streams)
    return app
