"""MongoDB access: the client, the collections and their indexes, in one place.

The client is made by :func:`open_database` on the running event loop (after any fork) and
indexes are created idempotently at every start, by every process.

Errors: pymongo is called from every module that reads or writes, so its connection-level
errors (:data:`OUTAGE_ERRORS`) are translated into
:class:`shared.core.errors.DatabaseUnavailable` by :func:`database_errors` at the edges instead:
around a whole request (the gateway's error middleware), around :func:`open_database`, and
around whatever must react to an outage. Other pymongo errors (a duplicate key, a refused
operation) are answers the code that asked handles, and stay pymongo's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure

from shared.core import clock
from shared.core.errors import ConfigurationError, DatabaseUnavailable
from shared.core.settings import CommonSettings
from shared.core.types import Doc

STREAMS = "streams"
GROUPS = "groups"
STREAM_LOGS = "stream_logs"
LEASES = "leases"
HEARTBEATS = "heartbeats"
LIVENESS = "stream_liveness"
STREAM_REPORTS = "stream_reports"
API_TOKENS = "api_tokens"
AUDIT = "audit"
WEBHOOKS = "webhooks"
WEBHOOK_DELIVERIES = "webhook_deliveries"

#: how long a stream's liveness record is kept (:mod:`shared.store.liveness`): the longest
#: ``STREAM_STATUS_OBSOLETING_PERIOD`` (its bound in settings) the handler-lost rule can use
LIVENESS_RETENTION: Final = timedelta(hours=1)

#: every index serves a query of the API or of a periodic job (docs/architecture.md lists
#: them beside their queries): each one is paid for on every write of its collection
INDEXES: Mapping[str, list[IndexModel]] = {
    STREAMS: [
        # lists without an account, by creation time (and their create_time filters)
        IndexModel([("create_time", ASCENDING), ("_id", ASCENDING)], name="create_time"),
        # lists and counts of an account, by creation time
        IndexModel(
            [("account_id", ASCENDING), ("create_time", ASCENDING), ("_id", ASCENDING)],
            name="account_create_time",
        ),
        # the queue (peek, direct claims) by queued_at; and, by its status prefix, the
        # statuses' counts, the handler-lost watchdog (in_progress) and the autorestart
        # sweep (failure)
        IndexModel(
            [("status", ASCENDING), ("queued_at", ASCENDING), ("_id", ASCENDING)],
            name="status_queued_at",
        ),
        # lists, claims and deletes by name
        IndexModel([("name", ASCENDING)], name="name"),
        # lists by source reference
        IndexModel([("data.reference", ASCENDING)], name="reference"),
        # a group's streams (group names are unique per account): lists and counts by
        # ``group_name``, claims filtered by group names, group deletes
        IndexModel([("group_names", ASCENDING)], name="group_names"),
        # the change sweep walks changes by time
        IndexModel([("outbox.log.log_time", ASCENDING)], name="outbox"),
    ],
    # what streams in processing show (shared.store.shown): found by _id only
    STREAM_REPORTS: [],
    GROUPS: [
        IndexModel(
            [("account_id", ASCENDING), ("group_name", ASCENDING)],
            name="account_group_name",
            unique=True,
        ),
        IndexModel([("group_name", ASCENDING)], name="group_name"),
        IndexModel([("create_time", ASCENDING), ("_id", ASCENDING)], name="create_time"),
    ],
    STREAM_LOGS: [
        IndexModel([("stream_id", ASCENDING), ("log_time", DESCENDING)], name="stream_log_time"),
        IndexModel([("log_time", DESCENDING), ("_id", DESCENDING)], name="log_time"),
        IndexModel([("account_id", ASCENDING), ("log_time", DESCENDING)], name="account_log_time"),
    ],
    LEASES: [],
    HEARTBEATS: [IndexModel([("seen_at", ASCENDING)], name="ttl", expireAfterSeconds=600)],
    LIVENESS: [
        IndexModel(
            [("at", ASCENDING)],
            name="ttl",
            expireAfterSeconds=int(LIVENESS_RETENTION.total_seconds()),
        )
    ],
    # a token is found by the hash of what the client sends (shared.services.access.credentials)
    API_TOKENS: [IndexModel([("hash", ASCENDING)], name="hash", unique=True)],
    AUDIT: [
        IndexModel([("time", DESCENDING), ("_id", DESCENDING)], name="time"),
        IndexModel([("account_id", ASCENDING), ("time", DESCENDING)], name="account_time"),
        # each row carries its own end (LUNA_STREAMS_AUDIT_RETENTION_DAYS when written)
        IndexModel([("expire_at", ASCENDING)], name="ttl", expireAfterSeconds=0),
    ],
    WEBHOOKS: [
        IndexModel([("account_id", ASCENDING), ("create_time", ASCENDING)], name="account"),
    ],
    # shared.services.webhooks.delivery: the due ones by time, a webhook's newest first; each
    # finished delivery carries its own end (shared.services.webhooks.delivery.RETENTION)
    WEBHOOK_DELIVERIES: [
        IndexModel([("state", ASCENDING), ("due_at", ASCENDING)], name="due"),
        IndexModel(
            [("webhook_id", ASCENDING), ("create_time", DESCENDING), ("_id", DESCENDING)],
            name="webhook_time",
        ),
        IndexModel([("expire_at", ASCENDING)], name="ttl", expireAfterSeconds=0),
    ],
}


@dataclass(frozen=True, slots=True)
class Database:
    """The client and the collections every process uses."""

    client: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]

    @property
    def streams(self) -> AsyncCollection[Doc]:
        return self.db[STREAMS]

    @property
    def groups(self) -> AsyncCollection[Doc]:
        return self.db[GROUPS]

    @property
    def stream_logs(self) -> AsyncCollection[Doc]:
        return self.db[STREAM_LOGS]

    @property
    def leases(self) -> AsyncCollection[Doc]:
        return self.db[LEASES]

    @property
    def heartbeats(self) -> AsyncCollection[Doc]:
        return self.db[HEARTBEATS]

    @property
    def liveness(self) -> AsyncCollection[Doc]:
        return self.db[LIVENESS]

    @property
    def stream_reports(self) -> AsyncCollection[Doc]:
        return self.db[STREAM_REPORTS]

    @property
    def api_tokens(self) -> AsyncCollection[Doc]:
        return self.db[API_TOKENS]

    @property
    def audit(self) -> AsyncCollection[Doc]:
        return self.db[AUDIT]

    @property
    def webhooks(self) -> AsyncCollection[Doc]:
        return self.db[WEBHOOKS]

    @property
    def webhook_deliveries(self) -> AsyncCollection[Doc]:
        return self.db[WEBHOOK_DELIVERIES]

    async def ping(self) -> None:
        """The server answers; the process's clock follows the server's (one clock)."""
        await clock.sync(self.client.admin)

    async def close(self) -> None:
        await self.client.close()


#: pymongo's errors of a server that cannot be reached or did not answer: ConnectionFailure
#: is the base of AutoReconnect (NetworkTimeout, NotPrimaryError, ServerSelectionTimeoutError)
#: and WaitQueueTimeoutError
OUTAGE_ERRORS: Final[tuple[type[Exception], ...]] = (ConnectionFailure,)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn the :data:`OUTAGE_ERRORS` raised in the block into
    :class:`~shared.core.errors.DatabaseUnavailable` (pymongo's error as its ``__cause__``);
    anything else passes unchanged."""
    try:
        yield
    except OUTAGE_ERRORS as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc


#: the embedded server answers ``{_id: {$in: ids}}`` in time growing faster than ``len(ids)``
#: (100 ids: 29 ms, 300: 190 ms) and likewise for inserts: ask in chunks of this many
ID_CHUNK = 100
#: and reads by ids in chunks of this many: it checks each document found against every id
#: asked (100 ids in one read: 11.7 ms, in two of 50: 8.3 ms, in four of 25: 8.3 ms)
FIND_CHUNK = 50


async def find_by_ids(
    collection: AsyncCollection[Doc], ids: list[str], projection: Doc | None = None
) -> list[Doc]:
    """The documents with these ids (no order), read in chunks of :data:`FIND_CHUNK`."""
    found: list[Doc] = []
    for start in range(0, len(ids), FIND_CHUNK):
        chunk = ids[start : start + FIND_CHUNK]
        found += await collection.find({"_id": {"$in": chunk}}, projection).to_list()
    return found


#: the server's code for a duplicate key
DUPLICATE_KEY: Final = 11000


async def insert_new(collection: AsyncCollection[Doc], docs: list[Doc]) -> int:
    """Insert documents with fixed ids, in chunks of :data:`ID_CHUNK`, unordered; one whose
    ``_id`` exists already was written before (a replay, a redelivery) and stays as it is.
    How many were new."""
    inserted = 0
    for start in range(0, len(docs), ID_CHUNK):
        chunk = docs[start : start + ID_CHUNK]
        try:
            inserted += len((await collection.insert_many(chunk, ordered=False)).inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != DUPLICATE_KEY for error in errors):
                raise
            inserted += len(chunk) - len(errors)
    return inserted


async def open_database(
    uri: str,
    db_name: str,
    *,
    timeout_ms: int = 5000,
    ensure_indexes: bool = True,
    journal: bool = True,
) -> Database:
    """Connect on the running loop, check the server answers, create indexes;
    :class:`~shared.core.errors.DatabaseUnavailable` when it does not answer.

    ``journal``: every write waits until the server has journaled it (``j: true``), so
    an acknowledged write survives the server's crash (``LUNA_STREAMS_MONGO_JOURNAL``).
    """
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        uri,
        journal=journal,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        uuidRepresentation="standard",
    )
    database = Database(client=client, db=client[db_name])
    try:
        with database_errors():
            await database.ping()
            if ensure_indexes:
                await create_indexes(database)
    except BaseException:  # re-raised, after closing the client
        await client.close()
        raise
    return database


async def open_configured_database(settings: CommonSettings) -> Database:
    """:func:`open_database` as a process's settings say (URI, database, journal)."""
    if not settings.mongo_uri:
        raise ConfigurationError(
            "LUNA_STREAMS_MONGO_URI is not set: give a MongoDB URI, or run "
            "`luna-streams all`, which starts the embedded server"
        )
    return await open_database(settings.mongo_uri, settings.db_name, journal=settings.mongo_journal)


#: indexes earlier versions made that no query needs any more: dropped at start
OBSOLETE_INDEXES: Mapping[str, tuple[str, ...]] = {
    STREAMS: ("groups", "autorestart_due", "status_claimed_at"),
}


async def create_indexes(database: Database) -> None:
    for name, models in INDEXES.items():
        if models:
            await database.db[name].create_indexes(models)
    for name, obsolete in OBSOLETE_INDEXES.items():
        present = {index["name"] async for index in await database.db[name].list_indexes()}
        for index in obsolete:
            if index in present:
                with contextlib.suppress(OperationFailure):  # dropped meanwhile by another
                    await database.db[name].drop_index(index)
