"""Export and import of streams (``GET /{1,2}/streams/export``, ``POST .../import``).

An exported line is what ``POST /{1,2}/streams`` accepts (the settings in that API
version's form), plus the stream's ``stream_id`` and its ``groups`` by name; no status,
version, time, error, video info, preview or log.

An import is idempotent: each line has a key (its ``import_key``, else its exported
``stream_id``), and the stream it makes has the id :func:`imported_id` of (account, key).
Lines go to the account the import names, else to their own
``account_id``. A line whose stream exists already is counted ``existing`` and changes nothing; two
imports of one file at once make each stream once (the stream's ``_id`` is unique). The
lines are validated before anything is written (the gateway does that), and the groups
they name are made in the account where missing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.core.clock import now_utc
from shared.core.errors import GroupExists, StreamNotConvertible
from shared.core.types import Doc
from shared.domain.documents import new_stream, stream_view
from shared.services.groups import GroupService
from shared.store.changes import StreamChanges
from shared.store.mongo import DUPLICATE_KEY, ID_CHUNK, Database, find_by_ids

#: the uuid5 namespace of imported stream ids
IMPORT_NAMESPACE: Final = uuid.UUID("5b0e3f6e-7a52-4c1f-9a39-3c0a3d2f1e11")
#: lines one import takes at most
MAX_LINES: Final = 10_000
#: what an exported line leaves out of the stream view
NOT_EXPORTED: Final = frozenset(
    {"status", "version", "create_time", "last_error", "video_info", "preview"}
)


def export_line(doc: Doc, api_version: int) -> bytes:
    """One exported stream (a JSON line); :class:`StreamNotConvertible` when this version
    cannot show it."""
    view = stream_view(doc, api_version)
    line = {key: value for key, value in view.items() if key not in NOT_EXPORTED}
    autorestart = view["autorestart"]
    line["autorestart"] = {
        "restart": autorestart["restart"],
        "attempt_count": autorestart["attempt_count"],
        "delay": autorestart["delay"],
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


async def export_lines(database: Database, query: Doc, api_version: int) -> AsyncIterator[bytes]:
    """The lines of every stream matching ``query``, oldest first, read in batches."""
    cursor = (
        database.streams.find(query, {"outbox": 0, "claim": 0})
        .sort([("create_time", 1), ("_id", 1)])
        .batch_size(ID_CHUNK)
    )
    async for doc in cursor:
        try:
            yield export_line(doc, api_version)
        except StreamNotConvertible:
            continue  # a v2-only stream has no v1 form (v1 filters leave it out already)


def imported_id(account_id: str, key: str) -> str:
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{account_id}:{key}"))


@dataclass(frozen=True, slots=True)
class ImportLine:
    """A validated line: its key, its create body (dumped), the names of its groups."""

    key: str
    body: dict[str, Any]
    groups: list[str]


async def _groups(
    database: Database, groups: GroupService, account_id: str, names: set[str]
) -> dict[str, str]:
    """Group id by name, the missing ones made."""
    found = {
        doc["group_name"]: doc["_id"]
        async for doc in database.groups.find(
            {"account_id": account_id, "group_name": {"$in": sorted(names)}}, {"group_name": 1}
        )
    }
    for name in sorted(names - set(found)):
        try:
            found[name] = (await groups.create(account_id, name, ""))["_id"]
        except GroupExists:  # made meanwhile
            doc = await database.groups.find_one({"account_id": account_id, "group_name": name})
            assert doc is not None
            found[name] = doc["_id"]
    return found


async def import_streams(
    database: Database,
    changes: StreamChanges,
    groups: GroupService,
    api_version: int,
    lines: list[ImportLine],
) -> tuple[int, int]:
    """Make the streams of ``lines`` that do not exist yet; (created, existing)."""
    ids = [imported_id(line.body["account_id"], line.key) for line in lines]
    there = {d["_id"] for d in await find_by_ids(database.streams, ids, {"_id": 1})}
    new = [(sid, line) for sid, line in zip(ids, lines, strict=True) if sid not in there]
    wanted: dict[str, set[str]] = {}
    for _, line in new:
        wanted.setdefault(line.body["account_id"], set()).update(line.groups)
    group_ids = {
        account: await _groups(database, groups, account, names)
        for account, names in wanted.items()
    }
    now = now_utc()
    created = 0
    for start in range(0, len(new), ID_CHUNK):
        docs = []
        for stream_id, line in new[start : start + ID_CHUNK]:
            of_account = group_ids[line.body["account_id"]]
            named = [(of_account[name], name) for name in line.groups]
            docs.append(new_stream(stream_id, api_version, line.body, named, now))
        created += await _create(changes, docs)
    return created, len(lines) - created


async def _create(changes: StreamChanges, docs: list[Doc]) -> int:
    """Insert ``docs`` through the change writer; how many were new (a concurrent import
    of the same lines made the others)."""
    try:
        await changes.create(docs)
    except DuplicateKeyError:  # one document, made meanwhile
        return 0
    except BulkWriteError as exc:
        errors = exc.details["writeErrors"]
        if any(error["code"] != DUPLICATE_KEY for error in errors):
            raise
        # the writer stopped at the insert: finish what it inserted (rows, then tokens)
        refused = {error["index"] for error in errors}
        made = [doc for index, doc in enumerate(docs) if index not in refused]
        await changes.finish([entry for doc in made for entry in doc["outbox"]])
        return len(made)
    return len(docs)
