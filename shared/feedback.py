"""Applying agent feedback: the rule for what a report may change, in one place.

A report changes a stream only when the stream exists, is ``in_progress`` and has the
version the agent claimed; otherwise it comes back ``unmodified`` with the stream's current
status and version (``not_found`` for a deleted stream), so the agent stops.

A batch is applied with one read, one ordered bulk write and one insert of log rows. Each
item has a feedback id (``<batch id>:<index>``) recorded on the stream and used as its log
row's ``_id``: a batch redelivered after a worker died mid-way recognises the items it
already applied (the stream carries the item's id): it does not apply them again (the
stream may have moved on since), writes their log rows (once: the row's ``_id`` is the
feedback id) and reports them ``modified`` as the first delivery would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne

from shared.mongo import Database, Doc
from shared.statuses import FAILURE, IN_PROGRESS, NOT_FOUND
from shared.streams.documents import (
    AUTORESTART_FAILED,
    AUTORESTART_IN_PROGRESS,
)
from shared.streams.outbox import insert_log_rows, log_row, now_utc

RECENT_FEEDBACK_IDS = 64


@dataclass(slots=True)
class FeedbackResult:
    modified: list[dict[str, Any]] = field(default_factory=list)
    unmodified: list[dict[str, Any]] = field(default_factory=list)
    #: (stream_id, version, attempt, due_at) of streams handed to autorestart
    restarts: list[tuple[str, int, int, datetime]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"streams": {"modified": self.modified, "unmodified": self.unmodified}}


def _autorestart_change(doc: Doc, now: datetime) -> tuple[Doc, tuple[int, datetime] | None]:
    """What a failure does to autorestart: arm the next attempt, or give up."""
    autorestart = doc.get("autorestart") or {}
    if not autorestart.get("restart"):
        return {}, None
    attempt = int(autorestart.get("current_attempt", 0)) + 1
    if attempt > int(autorestart.get("attempt_count", 0)):
        return {"autorestart.status": AUTORESTART_FAILED, "autorestart.due_at": None}, None
    due_at = now + timedelta(seconds=float(autorestart.get("delay", 0)))
    return (
        {"autorestart.status": AUTORESTART_IN_PROGRESS, "autorestart.due_at": due_at},
        (attempt, due_at),
    )


async def apply_feedback(database: Database, batch_id: str, items: list[Doc]) -> FeedbackResult:
    ids = list(dict.fromkeys(item["stream_id"] for item in items))
    docs = {
        doc["_id"]: doc
        async for doc in database.streams.find(
            {"_id": {"$in": ids}},
            {"status": 1, "version": 1, "account_id": 1, "autorestart": 1, "claim": 1},
        )
    }
    now = now_utc()
    result = FeedbackResult()
    ops: list[UpdateOne] = []
    planned: list[tuple[Doc, str, Doc, tuple[int, datetime] | None]] = []
    for index, item in enumerate(items):
        feedback_id = f"{batch_id}:{index}"
        doc = docs.get(item["stream_id"])
        if doc is None:
            result.unmodified.append(
                {"stream_id": item["stream_id"], "status": NOT_FOUND, "version": item["version"]}
            )
            continue
        seen = feedback_id in ((doc.get("claim") or {}).get("feedback_ids") or [])
        if not seen and (doc["status"] != IN_PROGRESS or doc["version"] != item["version"]):
            result.unmodified.append(
                {"stream_id": doc["_id"], "status": doc["status"], "version": doc["version"]}
            )
            continue
        row = log_row(
            doc,
            item["status"],
            item["version"],
            now,
            error=item.get("error"),
            video_info=item.get("video_info"),
            preview=item.get("preview"),
            row_id=feedback_id,
        )
        if seen:  # applied by an earlier delivery of this batch: only its log row may be missing
            planned.append((item, feedback_id, row, _pending_restart(doc, item)))
            continue
        op, restart = _update(doc, item, feedback_id, now)
        ops.append(op)
        planned.append((item, feedback_id, row, restart))
        doc["status"] = item["status"]  # a later item of this batch sees this report
    if planned:
        all_matched = True
        if ops:
            outcome = await database.streams.bulk_write(ops, ordered=True)
            all_matched = outcome.matched_count == len(ops)
        landed = await _landed(database, planned, all_matched)
        await insert_log_rows(database, [row for _, fid, row, _ in planned if fid in landed])
        for item, fid, _, restart in planned:
            entry = {
                "stream_id": item["stream_id"],
                "status": item["status"],
                "version": item["version"],
            }
            if fid in landed:
                result.modified.append(entry)
                if restart is not None:
                    result.restarts.append((item["stream_id"], item["version"], *restart))
            else:
                result.unmodified.append(await _current(database, item))
    return result


def _update(
    doc: Doc, item: Doc, feedback_id: str, now: datetime
) -> tuple[UpdateOne, tuple[int, datetime] | None]:
    """The compare-and-set that applies one report, and the autorestart it arms."""
    changes: Doc = {
        "status": item["status"],
        "last_error": item.get("error"),
        "claim.last_feedback_at": now,
    }
    for key in ("video_info", "preview"):
        if item.get(key) is not None:
            changes[key] = item[key]
    restart = None
    if item["status"] == FAILURE:
        autorestart, restart = _autorestart_change(doc, now)
        changes.update(autorestart)
    feedback_ids = {"$each": [feedback_id], "$slice": -RECENT_FEEDBACK_IDS}
    op = UpdateOne(
        {"_id": doc["_id"], "version": item["version"], "status": IN_PROGRESS},
        {"$set": changes, "$push": {"claim.feedback_ids": feedback_ids}},
    )
    return op, restart


def _pending_restart(doc: Doc, item: Doc) -> tuple[int, datetime] | None:
    """The autorestart an already applied failure armed, if it is still due (its first
    delivery may have died before scheduling it; ``restart_stream`` ignores duplicates)."""
    autorestart = doc.get("autorestart") or {}
    if (
        item["status"] != FAILURE
        or doc["status"] != FAILURE
        or doc["version"] != item["version"]
        or autorestart.get("status") != AUTORESTART_IN_PROGRESS
        or autorestart.get("due_at") is None
    ):
        return None
    return int(autorestart.get("current_attempt", 0)) + 1, autorestart["due_at"]


async def _landed(
    database: Database, planned: list[tuple[Doc, str, Doc, Any]], all_matched: bool
) -> set[str]:
    """Feedback ids whose update landed (all of them, unless some lost a race)."""
    fids = {fid for _, fid, _, _ in planned}
    if all_matched:
        return fids
    stream_ids = list({item["stream_id"] for item, _, _, _ in planned})
    landed: set[str] = set()
    async for doc in database.streams.find({"_id": {"$in": stream_ids}}, {"claim": 1}):
        landed.update((doc.get("claim") or {}).get("feedback_ids") or [])
    return fids & landed


async def _current(database: Database, item: Doc) -> dict[str, Any]:
    doc = await database.streams.find_one({"_id": item["stream_id"]}, {"status": 1, "version": 1})
    if doc is None:
        return {"stream_id": item["stream_id"], "status": NOT_FOUND, "version": item["version"]}
    return {"stream_id": doc["_id"], "status": doc["status"], "version": doc["version"]}
