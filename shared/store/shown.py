"""What a stream shows of its processing, written where it is cheap.

A stream in processing shows what its agent last reported: ``video_info``, ``preview`` and
``last_error``. Agents report often and those fields change (a camera's first report
brings its video_info and preview links) while nothing any query filters or sorts on
does; rewriting the stream document for it pays for every index of ``streams`` on every
write. So, as Kubernetes moved node heartbeats out of the Node object into small Lease
objects (KEP-589), a report that keeps the stream ``in_progress`` and only changes what it
shows writes one small document of ``stream_reports`` (``_id`` = stream id, no index but
``_id``): ``{version, at, video_info, preview, last_error}``, the whole shown state.

The stream document still holds those fields as its last change left them (a change that
writes them, a status change of a report, a PUT, records when: ``shown_at``). What a stream
shows is the newer of the two (:func:`overlay`): the report's when it was written after the
stream's last such change. Every reader of a stream that shows or copies these fields
(GET, lists, claims and peeks, events, previews, the rows of a change, exports) reads both,
one query per batch of streams (:func:`with_reports`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from pymongo import UpdateOne

from shared.core.types import Doc
from shared.store.mongo import ID_CHUNK, Database, find_by_ids

#: the fields a report shows, as the stream document names them
SHOWN: Final = ("last_error", "video_info", "preview")
#: when a change of the stream document last wrote :data:`SHOWN`
SHOWN_AT: Final = "shown_at"


def overlay(doc: Doc, report: Doc | None) -> Doc:
    """``doc`` showing ``report`` (in place) when the report is newer than what the
    stream document shows; ``doc``."""
    if report is None:
        return doc
    shown_at = doc.get(SHOWN_AT)
    if shown_at is None or report["at"] > shown_at:
        for key in SHOWN:
            doc[key] = report.get(key)
    return doc


async def reports_of(database: Database, stream_ids: Iterable[str]) -> dict[str, Doc]:
    """The stored reports of these streams, by stream id."""
    ids = list(dict.fromkeys(stream_ids))
    return {doc["_id"]: doc for doc in await find_by_ids(database.stream_reports, ids)}


async def with_reports(database: Database, docs: list[Doc]) -> list[Doc]:
    """Stream documents (changed in place) showing their latest reports; ``docs``."""
    if docs:
        reports = await reports_of(database, (doc["_id"] for doc in docs))
        for doc in docs:
            overlay(doc, reports.get(doc["_id"]))
    return docs


async def with_report(database: Database, doc: Doc | None) -> Doc | None:
    """One stream document showing its latest report (None stays None)."""
    if doc is not None:
        overlay(doc, await database.stream_reports.find_one({"_id": doc["_id"]}))
    return doc


def report_doc(version: int, at: datetime, shown: Doc) -> Doc:
    """The stored report of a stream: the whole shown state, at ``at``."""
    return {"version": version, "at": at, **{key: shown.get(key) for key in SHOWN}}


async def write_reports(database: Database, reports: dict[str, Doc]) -> None:
    """Store the latest report of these streams (stream id -> :func:`report_doc`), in
    unordered bulk upserts; writing one again is harmless (a redelivered batch)."""
    items: list[tuple[str, Any]] = list(reports.items())
    for start in range(0, len(items), ID_CHUNK):
        await database.stream_reports.bulk_write(
            [
                UpdateOne({"_id": stream_id}, {"$set": report}, upsert=True)
                for stream_id, report in items[start : start + ID_CHUNK]
            ],
            ordered=False,
        )


async def forget_reports(database: Database, stream_ids: list[str]) -> None:
    """Remove the reports of deleted streams."""
    for start in range(0, len(stream_ids), ID_CHUNK):
        await database.stream_reports.delete_many(
            {"_id": {"$in": stream_ids[start : start + ID_CHUNK]}}
        )
