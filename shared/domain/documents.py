"""Stored stream documents and their API views (v1 and v2 share one stored stream).

A stream keeps its settings in the form of the API version that created or last replaced
it (``api_version``): v1 keeps ``data`` + ``event_handler`` + ``policies``, v2 keeps ``data``
with ``analytics``. Reads through the other version convert on the fly
(:mod:`shared.domain.models.convert`); a stream that cannot be shown there answers 39011.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.core.errors import NotConvertible, StreamNotConvertible
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.autorestart import fresh_state
from shared.domain.models.convert import v1_to_v2, v2_to_v1


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, as the published examples show."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def settings_fields(api_version: int, body: dict[str, Any]) -> Doc:
    """The stored settings of a create/replace body (already validated and dumped)."""
    fields: Doc = {
        "api_version": api_version,
        "name": body["name"],
        "description": body["description"],
        "data": body["data"],
        "location": body.get("location"),
        "autorestart": fresh_state(body["autorestart"]),
    }
    if api_version == 1:
        fields["event_handler"] = body["event_handler"]
        fields["policies"] = body["policies"]
        fields["v1_compatible"] = True
    else:
        fields["event_handler"] = None
        fields["policies"] = None
        fields["v1_compatible"] = _v1_compatible(body["data"])
    return fields


def _v1_compatible(data: dict[str, Any]) -> bool:
    try:
        v2_to_v1(data)
    except NotConvertible:
        return False
    return True


#: v1 lists, counts and the queue through /1 see only streams v1 can show (a v2 stream
#: whose first analytics item is body-only or disabled is answered 39011 when asked by id)
V1_VISIBLE: Doc = {"v1_compatible": {"$ne": False}}


def new_stream(
    stream_id: str,
    api_version: int,
    body: dict[str, Any],
    groups: list[tuple[str, str]],
    now: datetime,
) -> Doc:
    return {
        "_id": stream_id,
        "account_id": body["account_id"],
        **settings_fields(api_version, body),
        "create_time": now,
        "last_error": None,
        "video_info": None,
        "preview": None,
        "groups": [group_id for group_id, _ in groups],
        "group_names": [name for _, name in groups],
        "outbox": [],
        **transitions.create(body["status"], now).set,
    }


def _settings_view(doc: Doc, api_version: int) -> Doc:
    stored = doc.get("api_version", 1)
    try:
        if api_version == stored:
            if api_version == 1:
                return {
                    "data": doc["data"],
                    "event_handler": doc["event_handler"],
                    "policies": doc["policies"],
                }
            return {"data": doc["data"]}
        if api_version == 2:
            return {"data": v1_to_v2(doc["data"], doc["event_handler"], doc["policies"])}
        data, event_handler, policies = v2_to_v1(doc["data"])
    except NotConvertible as exc:
        raise StreamNotConvertible(
            stream_id=doc["_id"], created=stored, asked=api_version, reason=str(exc)
        ) from None
    return {"data": data, "event_handler": event_handler, "policies": policies}


def stream_view(doc: Doc, api_version: int) -> Doc:
    """The stream object of the API (GET, list, queue claim and peek)."""
    autorestart = dict(doc["autorestart"])
    autorestart["last_attempt_time"] = format_time(autorestart.get("last_attempt_time"))
    autorestart.pop("due_at", None)
    video_info = doc.get("video_info")
    return {
        "stream_id": doc["_id"],
        "account_id": doc["account_id"],
        "name": doc["name"],
        "description": doc["description"],
        **_settings_view(doc, api_version),
        "location": doc.get("location"),
        "autorestart": autorestart,
        "version": doc["version"],
        "create_time": format_time(doc["create_time"]),
        "status": doc["status"],
        "last_error": doc.get("last_error"),
        "video_info": video_info,
        "groups": list(doc.get("group_names", [])),
        "preview": doc.get("preview"),
    }


#: fields a view needs; lists read only these (the outbox and bookkeeping stay behind)
VIEW_PROJECTION = {"outbox": 0, "claim": 0}
