"""Stream events: MongoDB change events of ``streams`` and ``stream_reports``, shaped as the
API's live events.

A change of a stream the API shows (created; its status, version, settings, error, video
info or preview changed, in the stream or in its stored report: :mod:`shared.store.shown`;
deleted) becomes one :class:`StreamEvent`. Bookkeeping writes (the outbox, claims, liveness,
autorestart due times) make none. The event id is the change's resume token (of one change
stream on the database, of these two collections), so a subscriber that saw event *n*
resumes right after it (:mod:`shared.services.event_hub`), from any gateway of the same database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import bson
from bson.errors import BSONError
from pymongo.asynchronous.change_stream import AsyncChangeStream

from shared.core.errors import BadEventId, StreamNotConvertible
from shared.core.types import Doc
from shared.domain.documents import VIEW_PROJECTION, format_time, stream_view
from shared.domain.statuses import DELETED
from shared.store.deletions import deleted_account
from shared.store.mongo import STREAM_REPORTS, STREAMS, Database
from shared.store.shown import SHOWN, with_report

EventKind = Literal["created", "changed", "deleted"]

#: stored fields an API stream view is made of: a change to one of them is an event
VISIBLE_FIELDS: Final = frozenset(
    {
        "api_version",
        "name",
        "description",
        "data",
        "event_handler",
        "policies",
        "location",
        "autorestart",
        "status",
        "version",
        "last_error",
        "video_info",
        "preview",
        "group_names",
    }
)
#: fields whose value in the change itself is shown (the rest comes from the lookup after it)
_EXACT: Final = frozenset({"api_version", "name", "description", "status", "version", "last_error"})
#: sub-fields of visible fields that the view leaves out
_HIDDEN: Final = {"autorestart": frozenset({"due_at"})}
#: group ids are shown by name: a change of ``groups`` shows as ``group_names``
_SHOWN_AS: Final = {"groups": "group_names"}
#: an event id: the hex of a resume token's ``_data``, or ``x`` + the hex of a whole token
MAX_EVENT_ID: Final = 4096


def event_id(token: Mapping[str, Any]) -> str:
    """The SSE id of a resume token (``{"_data": hex}`` on MongoDB and SecantusDB)."""
    data = token.get("_data")
    if set(token) == {"_data"} and isinstance(data, str):
        return data
    return "x" + bson.encode(dict(token)).hex()


def resume_token(text: str) -> dict[str, Any]:
    """The resume token of an event id; :class:`BadEventId` when it cannot be one."""
    if not 0 < len(text) <= MAX_EVENT_ID:
        raise BadEventId("an event id has 1 to 4096 characters")
    try:
        raw = bytes.fromhex(text[1:] if text.startswith("x") else text)
    except ValueError:
        raise BadEventId("an event id is hexadecimal") from None
    if not text.startswith("x"):
        return {"_data": text}
    try:
        return dict(bson.decode(raw))
    except BSONError:
        raise BadEventId("not an event id of this service") from None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber gets: one account's, some streams', or all."""

    account_id: str | None = None
    stream_ids: frozenset[str] | None = None

    def matches(self, event: StreamEvent) -> bool:
        if self.stream_ids is not None and event.stream_id not in self.stream_ids:
            return False
        return self.account_id is None or event.account_id == self.account_id


@dataclass(slots=True)
class StreamEvent:
    """One change of one stream; ``doc`` is the stream as read after the change, with the
    status, version, name, description and error this change wrote (a later change may be
    read already: it has an event of its own)."""

    event_id: str
    kind: EventKind
    stream_id: str
    account_id: str | None
    changed: tuple[str, ...]
    time: datetime | None
    doc: Doc | None
    _payloads: dict[int, str | None] = field(default_factory=dict, repr=False)

    def payload(self, api_version: int) -> str | None:
        """The event's JSON in ``api_version``'s stream view, made once per version;
        ``None`` when that version cannot show the stream (a v2-only stream on /1)."""
        if api_version not in self._payloads:
            self._payloads[api_version] = self._render(api_version)
        return self._payloads[api_version]

    def _render(self, api_version: int) -> str | None:
        stream: Doc | None = None
        if self.doc is not None:
            try:
                stream = stream_view(self.doc, api_version)
            except StreamNotConvertible:
                return None
        body = {
            "event": self.kind,
            "stream_id": self.stream_id,
            "account_id": self.account_id,
            "time": format_time(self.time),
            "changed": list(self.changed),
            "status": DELETED if self.doc is None else self.doc["status"],
            "version": None if self.doc is None else self.doc["version"],
            "stream": stream,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)


async def watch_changes(database: Database, **options: Any) -> AsyncChangeStream[Doc]:
    """A change stream of the collections whose changes are events (``options``: pymongo's
    ``watch`` options, such as ``resume_after``). The end of the stream (``invalidate``,
    when the database is dropped) passes too: a stream that ends unannounced would be read
    on and on, answering nothing."""
    events = {"ns.coll": {"$in": [STREAMS, STREAM_REPORTS]}}
    ends = {"operationType": {"$in": ["invalidate", "dropDatabase"]}}
    return await database.db.watch([{"$match": {"$or": [events, ends]}}], **options)


def visible_changes(description: Mapping[str, Any]) -> tuple[str, ...]:
    """The visible top-level fields an update touched (dotted or nested, as servers say)."""
    touched: dict[str, None] = {}
    updated: Mapping[str, Any] = description.get("updatedFields") or {}
    removed: list[str] = list(description.get("removedFields") or [])
    for key in [*updated, *removed]:
        top, _, rest = key.partition(".")
        top = _SHOWN_AS.get(top, top)
        if top not in VISIBLE_FIELDS:
            continue
        hidden = _HIDDEN.get(top, frozenset())
        if rest and rest.split(".")[0] in hidden:
            continue
        value = updated.get(key)
        if not rest and isinstance(value, dict) and hidden and set(value) <= hidden:
            continue  # {"autorestart": {"due_at": ...}}: a nested report of a hidden path
        touched[top] = None
    return tuple(touched)


async def shape_change(database: Database, change: Mapping[str, Any]) -> StreamEvent | None:
    """The event of a change of ``streams``, or ``None`` when the API shows no change."""
    operation = change.get("operationType")
    key = change.get("documentKey") or {}
    if "_id" not in key:
        return None
    stream_id = str(key["_id"])
    if (change.get("ns") or {}).get("coll") == STREAM_REPORTS:
        return await _report_change(database, change, stream_id)
    doc: Doc | None = None
    changed: tuple[str, ...] = ()
    kind: EventKind
    if operation == "insert":
        kind = "created"
        doc = {k: v for k, v in change["fullDocument"].items() if k not in VIEW_PROJECTION}
    elif operation in ("update", "replace"):
        kind = "changed"
        if operation == "update":
            changed = visible_changes(change.get("updateDescription") or {})
        else:
            changed = tuple(sorted(VISIBLE_FIELDS))
        if not changed:
            return None
        doc = await with_report(
            database, await database.streams.find_one({"_id": stream_id}, VIEW_PROJECTION)
        )
        if doc is None:
            return None  # deleted since: its ``deleted`` event follows
        updated = (change.get("updateDescription") or {}).get("updatedFields") or {}
        doc.update({key: updated[key] for key in _EXACT.intersection(updated)})
    elif operation == "delete":
        kind = "deleted"
    else:
        return None
    account_id = doc.get("account_id") if doc is not None else None
    if kind == "deleted":
        account_id = await deleted_account(database, stream_id)
    return StreamEvent(
        event_id=event_id(change["_id"]),
        kind=kind,
        stream_id=stream_id,
        account_id=account_id,
        changed=changed,
        time=change.get("wallTime"),
        doc=doc,
    )


async def _report_change(
    database: Database, change: Mapping[str, Any], stream_id: str
) -> StreamEvent | None:
    """The event of a stream's stored report written (what the stream shows changed)."""
    operation = change.get("operationType")
    if operation == "update":
        updated = (change.get("updateDescription") or {}).get("updatedFields") or {}
        changed = tuple(key for key in SHOWN if key in updated)
    elif operation in ("insert", "replace"):
        changed = SHOWN
    else:
        return None  # removed with its stream, whose ``deleted`` event says so
    if not changed:
        return None
    doc = await with_report(
        database, await database.streams.find_one({"_id": stream_id}, VIEW_PROJECTION)
    )
    if doc is None:
        return None
    return StreamEvent(
        event_id=event_id(change["_id"]),
        kind="changed",
        stream_id=stream_id,
        account_id=doc.get("account_id"),
        changed=changed,
        time=change.get("wallTime"),
        doc=doc,
    )


def sse_frame(event: str, data: str, event_id: str | None = None) -> bytes:
    """One Server-Sent Events message; the id comes last, so a cut message sets none."""
    lines = [f"event: {event}", *(f"data: {line}" for line in data.split("\n"))]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")
