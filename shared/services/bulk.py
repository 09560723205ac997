"""Bulk status changes: every stream a list filter matches to one status (``PATCH
/{1,2}/streams``), each one a guarded change through the change writer with its log row,
and the ones it does not apply to skipped with the reason.

Set-based: the matching ids are read once, then per chunk of :data:`ID_CHUNK` streams one
read (the filter applied again: a stream that stopped matching meanwhile is left alone),
the changes in one bulk write (:meth:`StreamChanges.apply`), their rows in one insert and
their tokens published together (``pending`` only; a pause publishes nothing). A change
that lost a race (the stream changed between the read and the write) is computed again
from a fresh read, :data:`ROUNDS` times at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from shared.core.clock import now_utc
from shared.core.errors import CannotCancelFinished, CannotStopInProgress
from shared.core.types import Doc
from shared.domain import transitions
from shared.store.changes import Change, StreamChanges
from shared.store.mongo import ID_CHUNK, Database

ROUNDS: Final = 5
#: why a stream was skipped
ALREADY: Final = "already in that status"
NOT_STOPPABLE: Final = "a video file in progress cannot be paused"
FINISHED: Final = "a finished stream cannot be cancelled"
CONTENDED: Final = "changed by other requests meanwhile; try again"


@dataclass(slots=True)
class BulkOutcome:
    changed: int = 0
    skipped: list[Doc] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        return {"changed": self.changed, "skipped": self.skipped}


def _skip(doc: Doc, reason: str) -> Doc:
    return {"stream_id": doc["_id"], "status": doc["status"], "reason": reason}


async def change_status(
    database: Database, changes: StreamChanges, query: Doc, target: str
) -> BulkOutcome:
    """Move every stream matching ``query`` (a streams filter) to ``target``."""
    transitions.check_patch_target(target)
    ids = [doc["_id"] async for doc in database.streams.find(query, {"_id": 1})]
    outcome = BulkOutcome()
    for start in range(0, len(ids), ID_CHUNK):
        await _change_chunk(
            database, changes, query, ids[start : start + ID_CHUNK], target, outcome
        )
    return outcome


async def _change_chunk(
    database: Database,
    changes: StreamChanges,
    query: Doc,
    ids: list[str],
    target: str,
    outcome: BulkOutcome,
) -> None:
    docs: list[Doc] = []
    for _ in range(ROUNDS):
        docs = await database.streams.find({"$and": [query, {"_id": {"$in": ids}}]}).to_list()
        now = now_utc()
        planned: list[Change] = []
        for doc in docs:
            try:
                transition = transitions.patch(doc, target, now)
            except CannotStopInProgress:
                outcome.skipped.append(_skip(doc, NOT_STOPPABLE))
                continue
            except CannotCancelFinished:
                outcome.skipped.append(_skip(doc, FINISHED))
                continue
            if not transition.path:
                outcome.skipped.append(_skip(doc, ALREADY))
                continue
            planned.append(Change(doc, transition, now))
        landed = {change.stream_id for change in await changes.apply(planned)}
        outcome.changed += len(landed)
        ids = [change.stream_id for change in planned if change.stream_id not in landed]
        if not ids:
            return
    outcome.skipped += [_skip(doc, CONTENDED) for doc in docs if doc["_id"] in set(ids)]
