"""Applying agent feedback: the rule for what a report may change, in one place.

A report changes a stream only when the stream exists, is ``in_progress`` and has the
version the agent claimed; otherwise it comes back ``unmodified`` with the stream's current
status and version (``not_found`` for a deleted stream), so the agent stops.

Batches that arrive together are applied together, in a constant number of round trips:
one read of every stream they name, then

- reports that change the stream's status (done, failure) as guarded
  :class:`~shared.store.changes.Change`\\ s, in one bulk write (their rows travel in the
  change's outbox);
- reports that keep it ``in_progress`` do not rewrite the stream: those that change what
  it shows (video_info, preview, error: a camera's first report) store it where it is
  cheap (:mod:`shared.store.shown`, one bulk write of small documents); their log rows,
  and those of the reports that only say "still processing, nothing new" (most of them),
  go in one insert, then one liveness record per batch (:mod:`shared.store.liveness`), which
  the handler-lost rule reads.

Reports of one stream that are applied together (a stream named twice in a batch, or in two
batches that arrived together) are decided in order and folded into one: the stream is
changed once, to what the last of them leaves it showing, with one log row (the last
report's id; the others are superseded, with no row of their own). A report after one that
ended processing, or of another version, is ``unmodified`` as before. So a batch costs time
linear in its size however often it names a stream, and every report gets its answer.

Each item has a feedback id (``<batch id>:<index>``), its log row's ``_id``. A batch
redelivered after a worker died mid-way recognises what its first delivery applied (the
stream's ``claim.feedback_ids`` for changes, the existing rows for the others), does not
apply it again, and reports it ``modified`` as the first delivery would have.

Batches come typed, as the queue worker validated them (:mod:`shared.domain.feedback_batch`),
and are answered typed; what a report shows (its video_info and preview) becomes a
document's fields only where it is stored (the stream, its stored report, a log row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from pydantic import BaseModel

from shared.core.clock import now_utc
from shared.core.types import Doc
from shared.domain import transitions
from shared.domain.feedback_batch import FeedbackBatch, FeedbackEntry, FeedbackOutcome
from shared.domain.models.feedback import FeedbackItem
from shared.domain.statuses import IN_PROGRESS, NOT_FOUND
from shared.store.changes import Change, StreamChanges
from shared.store.liveness import record_reports
from shared.store.mongo import Database, find_by_ids
from shared.store.outbox import insert_log_rows, log_row, rows_of
from shared.store.shown import SHOWN_AT, overlay, report_doc, reports_of, write_reports

SHOWN = ("video_info", "preview")
#: the fields of a stream that deciding a report needs (and its log row: ``account_id``)
DECIDE: Doc = {"status": 1, "version": 1, "last_error": 1, "account_id": 1, SHOWN_AT: 1} | {
    key: 1 for key in SHOWN
}
#: and recognising what an earlier delivery of a batch applied
REDELIVERY: Doc = {"claim.feedback_ids": 1, "outbox": 1}
#: and of a stream a report changes, what the change reads: its groups and account (for its
#: log row), the outbox it replaces, the autorestart settings a failure arms
CHANGE: Doc = DECIDE | {"groups": 1, "outbox": 1, "autorestart": 1}


def stored(value: BaseModel | None) -> Doc | None:
    """A report's video_info or preview as a document stores it (None: not given)."""
    return None if value is None else value.model_dump(mode="json")


def changes_status(doc: Doc, item: FeedbackItem) -> bool:
    """Whether a report changes the stream's status (a guarded change of the stream)."""
    return bool(item.status != doc["status"])


def changes_shown(doc: Doc, item: FeedbackItem) -> bool:
    """Whether a report changes what the stream shows (its video_info, preview, error)."""
    return item.error != doc.get("last_error") or any(
        (value := getattr(item, key)) is not None and stored(value) != doc.get(key) for key in SHOWN
    )


#: a report's answer: (its index in its batch, modified?, the entry)
Answer = tuple[int, bool, FeedbackEntry]


@dataclass(slots=True)
class _Report:
    """One item of one batch, and where its answer goes."""

    batch_no: int
    index: int
    item: FeedbackItem
    feedback_id: str


@dataclass(slots=True)
class _Fold:
    """The reports of one stream applied together, in order (within a batch and across
    the batches that arrived together), and what they leave the stream showing."""

    doc: Doc
    reports: list[_Report] = field(default_factory=list)
    #: what the reports so far leave the stream showing (deciding the next one reads it)
    state: Doc = field(init=False)
    #: the one report that stands for them all (set by the first :meth:`add`): the last
    #: one's status, version and error, and the last video_info and preview any of them gave
    merged: FeedbackItem = field(init=False)
    change: Change | None = None

    def __post_init__(self) -> None:
        doc = self.doc
        self.state = {key: doc.get(key) for key in ("_id", "status", "version", "last_error")}
        self.state |= {key: doc.get(key) for key in SHOWN}

    def add(self, report: _Report) -> None:
        item = report.item
        kept = (
            {
                key: value
                for key in SHOWN
                if getattr(item, key) is None and (value := getattr(self.merged, key)) is not None
            }
            if self.reports
            else {}
        )
        self.reports.append(report)
        self.merged = item.model_copy(update=kept) if kept else item
        self.state |= {"status": item.status, "last_error": item.error}
        self.state |= {
            key: stored(value) for key in SHOWN if (value := getattr(item, key)) is not None
        }

    @property
    def feedback_id(self) -> str:
        """The last report's: the id of the fold's log row."""
        return self.reports[-1].feedback_id

    def answer_all(
        self,
        answers: list[list[Answer]],
        modified: bool,
        entry_of: Callable[[FeedbackItem], FeedbackEntry],
    ) -> None:
        for report in self.reports:
            answers[report.batch_no].append((report.index, modified, entry_of(report.item)))


def _entry(item: FeedbackItem) -> FeedbackEntry:
    return FeedbackEntry(stream_id=item.stream_id, status=item.status, version=item.version)


def _current(doc: Doc | None, item: FeedbackItem) -> FeedbackEntry:
    if doc is None:
        return FeedbackEntry(stream_id=item.stream_id, status=NOT_FOUND, version=item.version)
    return FeedbackEntry(stream_id=doc["_id"], status=doc["status"], version=doc["version"])


async def apply_feedback(
    database: Database, changes: StreamChanges, batches: list[FeedbackBatch]
) -> list[FeedbackOutcome]:
    """Apply feedback batches that arrived together; one result per batch, in order.

    Reports of one stream among them are folded, in order, into one report that stands for
    them all (:class:`_Fold`): the stream is changed once, with one log row, however often
    it is named, so a batch costs time linear in its size. Every report gets its answer."""
    # the time of the reports' rows, taken before the streams are read: a stream read here
    # is deleted later, so its ``deleted`` row (timed after the delete) comes after these
    now = now_utc()
    docs = await _read_streams(database, batches)
    answers: list[list[Answer]] = [[] for _ in batches]
    recovered: list[Doc] = []
    folds = _plan(batches, answers, docs, await _rows_of_redeliveries(database, batches), recovered)
    # rows of changes an earlier delivery made but did not get to write
    await changes.write_rows(recovered)
    changing: list[_Fold] = []
    alive: list[_Fold] = []
    shown: dict[str, Doc] = {}
    for fold in folds:
        if changes_status(fold.doc, fold.merged):
            fold.change = _change(fold.doc, fold.merged, fold.state, fold.feedback_id, now)
            changing.append(fold)
        else:
            if changes_shown(fold.doc, fold.merged):
                shown[fold.doc["_id"]] = report_doc(fold.merged.version, now, fold.state)
            alive.append(fold)
    await _apply_changes(database, changes, changing, answers)
    # before the rows: a redelivered batch whose rows exist was applied, reports and all
    await write_reports(database, shown)
    if alive:
        await insert_log_rows(database, [_row(fold, now) for fold in alive])
        reported: list[list[str]] = [[] for _ in batches]
        for fold in alive:
            for number in {report.batch_no for report in fold.reports}:
                reported[number].append(fold.doc["_id"])
        await record_reports(
            database, [(b.batch_id, ids) for b, ids in zip(batches, reported, strict=True)], now
        )
        for fold in alive:
            fold.answer_all(answers, True, _entry)
    return [_result(given) for given in answers]


def _result(answers: list[Answer]) -> FeedbackOutcome:
    """A batch's answers, each list in the order of the batch's items."""
    result = FeedbackOutcome()
    for _, modified, entry in sorted(answers, key=lambda answer: answer[0]):
        (result.modified if modified else result.unmodified).append(entry)
    return result


async def _read_streams(database: Database, batches: list[FeedbackBatch]) -> dict[str, Doc]:
    """The streams the batches name, by id: what deciding a report needs of each, and what
    changing it needs (:data:`CHANGE`) where a report changes it.

    Each shows its latest report (:mod:`shared.store.shown`, one more read). A second
    read of the streams only when some report changes a stream's status: most reports
    only prove liveness, and the server pays for every field it reads of every stream."""
    ids = list(dict.fromkeys(item.stream_id for b in batches for item in b.streams))
    projection = DECIDE | (REDELIVERY if any(b.redelivered for b in batches) else {})
    docs = {doc["_id"]: doc for doc in await find_by_ids(database.streams, ids, projection)}
    reports = await reports_of(database, docs)
    for read in docs.values():
        overlay(read, reports.get(read["_id"]))
    changing = list(
        dict.fromkeys(
            item.stream_id
            for b in batches
            for item in b.streams
            if (doc := docs.get(item.stream_id)) is not None
            and _current_version(doc, item)
            and changes_status(doc, item)
        )
    )
    if changing:
        docs.update(
            (d["_id"], overlay(d, reports.get(d["_id"])))
            for d in await find_by_ids(database.streams, changing, CHANGE)
        )
    return docs


def _current_version(doc: Doc, item: FeedbackItem) -> bool:
    """The report is of the version being processed (else it is answered ``unmodified``)."""
    return bool(doc["status"] == IN_PROGRESS and doc["version"] == item.version)


def _applied_before(
    batch: FeedbackBatch, docs: dict[str, Doc], logged_before: set[str]
) -> set[int]:
    """Indexes of the items of a redelivered batch that an earlier delivery applied.

    An item is known by its feedback id: among the stream's recent ones, or the id of a
    log row. An item folded into a later one of the same stream and version (superseded,
    so without a row or id of its own) was applied when that later one was."""
    if not batch.redelivered:
        return set()
    applied: set[int] = set()
    last: dict[tuple[str, int], int] = {}
    for index, item in enumerate(batch.streams):
        doc = docs.get(item.stream_id)
        if doc is None:
            continue
        feedback_id = f"{batch.batch_id}:{index}"
        recent = (doc.get("claim") or {}).get("feedback_ids") or []
        if feedback_id in recent or feedback_id in logged_before:
            applied.add(index)
            last[item.stream_id, item.version] = index
    for index, item in enumerate(batch.streams):
        if index < last.get((item.stream_id, item.version), -1):
            applied.add(index)
    return applied


def _plan(
    batches: list[FeedbackBatch],
    answers: list[list[Answer]],
    docs: dict[str, Doc],
    logged_before: set[str],
    recovered: list[Doc],
) -> list[_Fold]:
    """Decide every report, in order, in one pass: answered now (applied before, or not of
    the version being processed), or folded into its stream's :class:`_Fold`."""
    folds: dict[str, _Fold] = {}
    for number, batch in enumerate(batches):
        given = answers[number]
        applied_before = _applied_before(batch, docs, logged_before)
        for index, item in enumerate(batch.streams):
            feedback_id = f"{batch.batch_id}:{index}"
            doc = docs.get(item.stream_id)
            fold = folds.get(item.stream_id)
            if doc is not None and index in applied_before:
                # its row is written, or in the outbox
                recovered += [
                    row for row in rows_of(doc.get("outbox") or []) if row["_id"] == feedback_id
                ]
                given.append((index, True, _entry(item)))
            elif doc is None:
                given.append((index, False, _current(None, item)))
            elif not _current_version(fold.state if fold else doc, item):
                given.append((index, False, _current(fold.state if fold else doc, item)))
            else:
                if fold is None:
                    fold = folds[item.stream_id] = _Fold(doc)
                fold.add(_Report(number, index, item, feedback_id))
    return list(folds.values())


async def _apply_changes(
    database: Database, changes: StreamChanges, folds: list[_Fold], answers: list[list[Answer]]
) -> None:
    """One bulk write of every fold's change; each report answered by how its fold's went.

    A change that lost a race (its stream paused, patched, downgraded meanwhile) is answered
    with the stream as it is now: one read of all of them (by ids, in chunks)."""
    if not folds:
        return
    landed = {id(c) for c in await changes.apply([f.change for f in folds if f.change])}
    lost: list[_Fold] = []
    for fold in folds:
        if id(fold.change) in landed:
            fold.answer_all(answers, True, _entry)
        else:
            lost.append(fold)
    if not lost:
        return
    fresh = {
        doc["_id"]: doc
        for doc in await find_by_ids(
            database.streams, [fold.doc["_id"] for fold in lost], {"status": 1, "version": 1}
        )
    }
    for fold in lost:
        fold.answer_all(answers, False, partial(_current, fresh.get(fold.doc["_id"])))


async def _rows_of_redeliveries(database: Database, batches: list[FeedbackBatch]) -> set[str]:
    """Feedback ids of redelivered batches whose log row exists (applied before)."""
    fids = [
        f"{b.batch_id}:{index}" for b in batches if b.redelivered for index in range(len(b.streams))
    ]
    if not fids:
        return set()
    return {
        row["_id"] async for row in database.stream_logs.find({"_id": {"$in": fids}}, {"_id": 1})
    }


def _row(fold: _Fold, now: datetime) -> Doc:
    item = fold.merged
    return log_row(
        fold.doc,
        item.status,
        item.version,
        now,
        error=item.error,
        video_info=stored(item.video_info),
        preview=stored(item.preview),
        row_id=fold.feedback_id,
    )


def _change(doc: Doc, item: FeedbackItem, state: Doc, feedback_id: str, now: datetime) -> Change:
    """The guarded change that applies one report that changes the stream's status (a
    failure arms autorestart with it); the stream shows what ``state`` (its latest report
    and this one) shows, so its stored report is older than what it shows now."""
    change = Change(
        dict(doc),
        transitions.report(doc, item.status, item.error, feedback_id, now),
        now,
        fields={key: state.get(key) for key in SHOWN},
        details={
            "error": item.error,
            "video_info": stored(item.video_info),
            "preview": stored(item.preview),
        },
        row_ids=[feedback_id],
    )
    return change
