"""Applying agent feedback: the rule for what a report may change, in one place.

A report changes a stream only when the stream exists, is ``in_progress`` and has the
version the agent claimed; otherwise it comes back ``unmodified`` with the stream's current
status and version (``not_found`` for a deleted stream), so the agent stops.

Batches that arrive together are applied together, in a constant number of round trips:
one read of every stream they name, then

- reports that change what the stream shows (status, video_info, preview, error) as
  guarded :class:`~shared.streams.changes.Change`\\ s, in one bulk write (their rows travel
  in the change's outbox);
- reports that only say "still processing, nothing new" (most of them) do not rewrite the
  stream: their log rows go in one insert, then one liveness record per batch
  (:mod:`shared.liveness`), which the handler-lost rule reads.

Each item has a feedback id (``<batch id>:<index>``), its log row's ``_id``. A batch
redelivered after a worker died mid-way recognises what its first delivery applied (the
stream's ``claim.feedback_ids`` for changes, the existing rows for the others), does not
apply it again, and reports it ``modified`` as the first delivery would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import autorestart
from shared.clock import now_utc
from shared.liveness import record_reports
from shared.mongo import Database, Doc, find_by_ids
from shared.statuses import FAILURE, IN_PROGRESS, NOT_FOUND
from shared.streams.changes import Change, StreamChanges, insert_log_rows, log_row

RECENT_FEEDBACK_IDS = 64
SHOWN = ("video_info", "preview")
#: the fields of a stream that deciding a report needs (and its log row: ``account_id``)
DECIDE: Doc = {"status": 1, "version": 1, "last_error": 1, "account_id": 1} | {
    key: 1 for key in SHOWN
}
#: and recognising what an earlier delivery of a batch applied
REDELIVERY: Doc = {"claim.feedback_ids": 1, "outbox": 1}
#: and of a stream a report changes, what the change reads: its groups and account (for its
#: log row), the outbox it replaces, the autorestart settings a failure arms
CHANGE: Doc = DECIDE | {"groups": 1, "outbox": 1, "autorestart": 1}


@dataclass(slots=True)
class FeedbackBatch:
    batch_id: str
    items: list[Doc]
    #: a redelivery: its first delivery may have applied some of it
    redelivered: bool = False


@dataclass(slots=True)
class FeedbackResult:
    modified: list[dict[str, Any]] = field(default_factory=list)
    unmodified: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"streams": {"modified": self.modified, "unmodified": self.unmodified}}


def changes_stream(doc: Doc, item: Doc) -> bool:
    """Whether a report changes what the stream shows (else it only proves liveness)."""
    return (
        item["status"] != doc["status"]
        or item.get("error") != doc.get("last_error")
        or any(item.get(key) is not None and item[key] != doc.get(key) for key in SHOWN)
    )


@dataclass(slots=True)
class _Planned:
    batch: FeedbackBatch
    result: FeedbackResult
    item: Doc
    feedback_id: str
    change: Change | None = None


def _entry(item: Doc) -> dict[str, Any]:
    return {"stream_id": item["stream_id"], "status": item["status"], "version": item["version"]}


def _current(doc: Doc | None, item: Doc) -> dict[str, Any]:
    if doc is None:
        return {"stream_id": item["stream_id"], "status": NOT_FOUND, "version": item["version"]}
    return {"stream_id": doc["_id"], "status": doc["status"], "version": doc["version"]}


async def apply_feedback(
    database: Database, changes: StreamChanges, batches: list[FeedbackBatch]
) -> list[FeedbackResult]:
    """Apply feedback batches that arrived together; one result per batch, in order."""
    docs = await _read_streams(database, batches)
    now = now_utc()
    results = [FeedbackResult() for _ in batches]
    recovered: list[Doc] = []
    rounds, alive = _plan(
        batches, results, docs, await _rows_of_redeliveries(database, batches), now, recovered
    )
    # rows of changes an earlier delivery made but did not get to write
    await changes.write_rows(recovered)
    for round_ in rounds:
        await _apply_changes(database, changes, round_)
    if alive:
        await insert_log_rows(database, [_row(docs, p, now) for p in alive])
        for batch in batches:
            await record_reports(
                database,
                batch.batch_id,
                [p.item["stream_id"] for p in alive if p.batch is batch],
                now,
            )
        for planned in alive:
            planned.result.modified.append(_entry(planned.item))
    return results


async def _read_streams(database: Database, batches: list[FeedbackBatch]) -> dict[str, Doc]:
    """The streams the batches name, by id: what deciding a report needs of each, and what
    changing it needs (:data:`CHANGE`) where a report changes it.

    Two reads only when some report changes its stream: most reports only prove liveness,
    and the server pays for every field it reads of every stream."""
    ids = list(dict.fromkeys(item["stream_id"] for b in batches for item in b.items))
    projection = DECIDE | (REDELIVERY if any(b.redelivered for b in batches) else {})
    docs = {doc["_id"]: doc for doc in await find_by_ids(database.streams, ids, projection)}
    changing = list(
        dict.fromkeys(
            item["stream_id"]
            for b in batches
            for item in b.items
            if (doc := docs.get(item["stream_id"])) is not None
            and _current_version(doc, item)
            and changes_stream(doc, item)
        )
    )
    if changing:
        docs.update((d["_id"], d) for d in await find_by_ids(database.streams, changing, CHANGE))
    return docs


def _current_version(doc: Doc, item: Doc) -> bool:
    """The report is of the version being processed (else it is answered ``unmodified``)."""
    return bool(doc["status"] == IN_PROGRESS and doc["version"] == item["version"])


def _plan(
    batches: list[FeedbackBatch],
    results: list[FeedbackResult],
    docs: dict[str, Doc],
    logged_before: set[str],
    now: datetime,
    recovered: list[Doc],
) -> tuple[list[list[_Planned]], list[_Planned]]:
    """Decide every report: answered now, a change (in rounds: one change of a stream per
    round, in order), or a liveness report."""
    rounds: list[list[_Planned]] = []
    alive: list[_Planned] = []
    for batch, result in zip(batches, results, strict=True):
        for index, item in enumerate(batch.items):
            feedback_id = f"{batch.batch_id}:{index}"
            doc = docs.get(item["stream_id"])
            recent = ((doc or {}).get("claim") or {}).get("feedback_ids") or []
            if doc is not None and (feedback_id in recent or feedback_id in logged_before):
                # applied by an earlier delivery: its row is written, or in the outbox
                recovered += [
                    e["log"] for e in doc.get("outbox") or [] if e["log"]["_id"] == feedback_id
                ]
                result.modified.append(_entry(item))
            elif doc is None or not _current_version(doc, item):
                result.unmodified.append(_current(doc, item))
            elif changes_stream(doc, item):
                planned = _Planned(batch, result, item, feedback_id)
                planned.change = _change(doc, item, feedback_id, now)
                _round_for(rounds, planned).append(planned)
                doc.update(planned.change.set)  # a later report of this stream sees it
            else:
                alive.append(_Planned(batch, result, item, feedback_id))
    return rounds, alive


async def _apply_changes(
    database: Database, changes: StreamChanges, round_: list[_Planned]
) -> None:
    landed = {id(c) for c in await changes.apply([p.change for p in round_ if p.change])}
    for planned in round_:
        item = planned.item
        if id(planned.change) in landed:
            planned.result.modified.append(_entry(item))
        else:  # lost a race (paused, patched, downgraded meanwhile)
            fresh = await database.streams.find_one(
                {"_id": item["stream_id"]}, {"status": 1, "version": 1}
            )
            planned.result.unmodified.append(_current(fresh, item))


def _round_for(rounds: list[list[_Planned]], planned: _Planned) -> list[_Planned]:
    stream_id = planned.item["stream_id"]
    for round_ in rounds:
        if all(p.item["stream_id"] != stream_id for p in round_):
            return round_
    rounds.append([])
    return rounds[-1]


async def _rows_of_redeliveries(database: Database, batches: list[FeedbackBatch]) -> set[str]:
    """Feedback ids of redelivered batches whose log row exists (applied before)."""
    fids = [
        f"{b.batch_id}:{index}" for b in batches if b.redelivered for index in range(len(b.items))
    ]
    if not fids:
        return set()
    return {
        row["_id"] async for row in database.stream_logs.find({"_id": {"$in": fids}}, {"_id": 1})
    }


def _row(docs: dict[str, Doc], planned: _Planned, now: datetime) -> Doc:
    item = planned.item
    return log_row(
        docs[item["stream_id"]],
        item["status"],
        item["version"],
        now,
        error=item.get("error"),
        video_info=item.get("video_info"),
        preview=item.get("preview"),
        row_id=planned.feedback_id,
    )


def _change(doc: Doc, item: Doc, feedback_id: str, now: datetime) -> Change:
    """The guarded change that applies one report (a failure arms autorestart with it)."""
    fields: Doc = {
        "status": item["status"],
        "last_error": item.get("error"),
        "claim.last_feedback_at": now,
    }
    for key in SHOWN:
        if item.get(key) is not None:
            fields[key] = item[key]
    if item["status"] == FAILURE:
        fields.update(autorestart.on_failure(doc, now))
    change = Change(
        dict(doc),
        [item["status"]],
        guard={"version": item["version"], "status": IN_PROGRESS},
        set=fields,
        when=now,
        push={"claim.feedback_ids": {"$each": [feedback_id], "$slice": -RECENT_FEEDBACK_IDS}},
        details={
            "error": item.get("error"),
            "video_info": item.get("video_info"),
            "preview": item.get("preview"),
        },
        row_ids=[feedback_id],
    )
    return change
