"""The application factory: settings, resources, middlewares and routes, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.api import Api, all_operations, register
from gateway.docs import build_docs
from gateway.keys import (
    BROKER,
    DATABASE,
    DOCS,
    GROUPS,
    LIFECYCLE,
    METRICS,
    SETTINGS,
    STREAMS,
    Lifecycle,
)
from gateway.metrics import GatewayMetrics
from gateway.middlewares import error_middleware, metrics_middleware, request_id_middleware
from gateway.openapi import build_spec
from gateway.routes import groups, service, streams
from shared.broker import open_broker
from shared.groups import GroupService
from shared.mongo import open_database
from shared.settings import Settings
from shared.streams.outbox import Outbox
from shared.streams.service import StreamService
from shared.tokens import BrokerTokenPublisher

# order matters: fixed paths (/1/streams/count, /logs, /processing/...) before /{stream_id}
APIS: list[Api] = [service.api, groups.api, streams.api]


class MissingMongoUri(RuntimeError):
    pass


async def database_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.mongo_uri:
        raise MissingMongoUri(
            "LUNA_STREAMS_MONGO_URI is not set: give a MongoDB URI, or run "
            "`luna-streams all`, which starts the embedded server"
        )
    app[DATABASE] = await open_database(settings.mongo_uri, settings.db_name)
    yield
    await app[DATABASE].close()


async def broker_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[BROKER] = await open_broker(
        settings.amqp_url, settings.queue_prefix, queue_type=settings.queue_type
    )
    yield
    await app[BROKER].close()


async def services_context(app: web.Application) -> AsyncIterator[None]:
    publisher = BrokerTokenPublisher(app[BROKER])
    app[STREAMS] = StreamService(app[DATABASE], Outbox(app[DATABASE], publisher))
    app[GROUPS] = GroupService(app[DATABASE], publisher)
    yield


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_size,
        middlewares=[request_id_middleware, metrics_middleware, error_middleware],
    )
    app[SETTINGS] = settings
    app[METRICS] = GatewayMetrics()
    app[LIFECYCLE] = Lifecycle()
    register(app, APIS)
    app[DOCS] = build_docs(build_spec(all_operations(APIS)))
    app.cleanup_ctx.append(database_context)
    app.cleanup_ctx.append(broker_context)
    app.cleanup_ctx.append(services_context)
    return app
