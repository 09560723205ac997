"""The stream status machine (behaviour reference, section 2): every change of a stream, in
one place.

Each function describes one operation as a :class:`Transition`:

- ``path``: the statuses the stream passes through, in order (every one gets exactly one
  stream log row; ``[]`` for a change that passes through none);
- ``guard``: what must still hold of the stream as it was read when the change lands (the
  compare-and-set; a change whose guard fails lost a race and is computed again from a
  fresh read, or dropped);
- ``set``: what the stream document gets, the entering-effects of the status it enters
  included (:func:`entering`);
- ``version``: the version the rows carry, when the change makes a new one (a PUT).

:mod:`shared.store.changes` applies a transition (one guarded write, its log rows and its
queue tokens through the outbox); callers add only the fields that are theirs (a PUT's
settings, a report's error and what it shows) and never spell a guard or an entering-effect.
The statuses and status sets themselves are :mod:`shared.domain.statuses`.

The rules:

- entering ``pending`` puts the stream at the back of the queue (``queued_at = now``) with
  no claim; such a change is guarded by the groups read too, because its queue token goes
  to those groups' queues: a stream attached to a group meanwhile is read again and gets
  that group's token as well;
- entering ``in_progress`` (a claim) starts a claim (``claimed_at = now``, no report yet),
  guarded by the token-freshness rule (:func:`shared.domain.tokens.waiting_guard`);
- a client's change that leaves ``in_progress`` ends the claim; an agent's report that
  leaves it keeps the claim, whose recent feedback ids recognise a redelivered batch;
- a client's return to ``pending`` (PATCH) resets the autorestart attempts; an autorestart
  counts one; a handler lost keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.core.errors import BadStreamStatus, CannotCancelFinished, CannotStopInProgress
from shared.core.types import Doc
from shared.domain import autorestart
from shared.domain.statuses import (
    AUTORESTART_ENABLED,
    AUTORESTART_IN_PROGRESS,
    CANCEL,
    CREATE_STATUSES,
    FAILURE,
    FINISHED,
    HANDLER_LOST,
    IN_PROGRESS,
    PATCH_STATUSES,
    PAUSE,
    PENDING,
    RESTART,
)
from shared.domain.tokens import waiting_guard


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one stream: the statuses passed, its guard, what it writes."""

    path: list[str]
    guard: Doc
    set: Doc
    version: int | None = None
    #: an array update (``$push``) besides ``set``
    push: Doc | None = None
    #: queue tokens of a stream that stays ``pending``, for these groups' queues only
    group_tokens: list[str] = field(default_factory=list)


def _check(status: str, permitted: tuple[str, ...]) -> None:
    if status not in permitted:
        raise BadStreamStatus(status=status, permitted=", ".join(permitted))


def check_patch_target(status: str) -> None:
    """A PATCH may ask for these statuses only (39002 names them)."""
    _check(status, PATCH_STATUSES)


def entering(status: str, now: datetime) -> Doc:
    """What a stream gets on entering ``status`` (besides the status itself)."""
    if status == PENDING:
        return {"status": PENDING, "queued_at": now, "claim": None}
    if status == IN_PROGRESS:
        return {
            "status": IN_PROGRESS,
            "claim": {"claimed_at": now, "last_feedback_at": None, "feedback_ids": []},
        }
    return {"status": status}


def _entering_guard(doc: Doc, target: str) -> Doc:
    """What a change into ``target`` is guarded by because of where it goes: into
    ``pending``, the groups read (its token goes to their queues)."""
    return {"groups": doc.get("groups")} if target == PENDING else {}


# --- clients' changes -----------------------------------------------------------------


def create(status: str, now: datetime) -> Transition:
    """∅ -> pending | pause: the fields a new stream starts with."""
    _check(status, CREATE_STATUSES)
    return Transition(
        [status], {}, {"version": 1, "queued_at": None, "claim": None} | entering(status, now)
    )


def replace(doc: Doc, status: str, now: datetime) -> Transition:
    """PUT: any status -> restart -> pending | pause, at a new version, shown afresh (the
    caller adds the new settings and groups)."""
    _check(status, CREATE_STATUSES)
    version = int(doc["version"]) + 1
    fields: Doc = {
        "version": version,
        "last_error": None,
        "video_info": None,
        "preview": None,
        "queued_at": None,
        "claim": None,
    } | entering(status, now)
    return Transition(
        [RESTART, status],
        {"version": doc["version"]} | _entering_guard(doc, status),
        fields,
        version=version,
    )


def patch_path(stream_id: str, current: str, target: str, source_type: str) -> list[str]:
    """PATCH status: the statuses to pass through; [] when the stream is already there.

    - pause of an in-progress video file is refused (39003): it cannot be stopped midway;
    - cancel of a finished stream (done, failure) is refused (39005);
    - back to pending from in_progress restarts processing: in_progress -> restart -> pending.
    """
    check_patch_target(target)
    if target == current:
        return []
    if target == PAUSE and current == IN_PROGRESS and source_type == "videofile":
        raise CannotStopInProgress(stream_id=stream_id)
    if target == CANCEL and current in FINISHED:
        raise CannotCancelFinished(stream_id=stream_id)
    if target == PENDING and current == IN_PROGRESS:
        return [RESTART, PENDING]
    return [target]


def patch(doc: Doc, target: str | None, now: datetime) -> Transition:
    """PATCH (of one stream, or of each a filter matches) to ``target`` (None: no status
    change; the caller may still change the description under the same guard)."""
    guard: Doc = {"status": doc["status"], "version": doc["version"]}
    if target is None:
        return Transition([], guard, {})
    path = patch_path(doc["_id"], doc["status"], target, doc["data"].get("type", ""))
    if not path:
        return Transition([], guard, {})
    fields = entering(target, now)
    if target == PENDING:
        fields["autorestart"] = autorestart.fresh_state(doc["autorestart"])
    if doc["status"] == IN_PROGRESS:
        fields["claim"] = None
    return Transition(path, guard | _entering_guard(doc, target), fields)


# --- the queue and the agents ---------------------------------------------------------


def claim(doc: Doc, now: datetime) -> Transition:
    """pending -> in_progress, while the stream still waits at the version and place in the
    queue it was read at."""
    return Transition(
        [IN_PROGRESS], waiting_guard(doc["version"], doc["queued_at"]), entering(IN_PROGRESS, now)
    )


#: feedback ids a stream remembers (a redelivered batch is recognised by them)
RECENT_FEEDBACK_IDS = 64


def report(doc: Doc, status: str, error: str | None, feedback_id: str, now: datetime) -> Transition:
    """An agent's report that changes the status of the version it processes: in_progress
    -> done | failure (a failure arms autorestart). The claim stays (its feedback ids)."""
    fields: Doc = {"status": status, "last_error": error, "claim.last_feedback_at": now}
    if status == FAILURE:
        fields.update(autorestart.on_failure(doc, now))
    return Transition(
        [status],
        {"version": doc["version"], "status": IN_PROGRESS},
        fields,
        push={"claim.feedback_ids": {"$each": [feedback_id], "$slice": -RECENT_FEEDBACK_IDS}},
    )


def handler_lost(doc: Doc, now: datetime) -> Transition:
    """A handler went silent: in_progress -> handler_lost -> restart -> pending, unless a
    report or a new claim came meanwhile."""
    claimed = doc["claim"]
    return Transition(
        [HANDLER_LOST, RESTART, PENDING],
        {
            "status": IN_PROGRESS,
            "version": doc["version"],
            "claim.claimed_at": claimed["claimed_at"],
            "claim.last_feedback_at": claimed.get("last_feedback_at"),
        }
        | _entering_guard(doc, PENDING),
        entering(PENDING, now),
    )


def silent_since(doc: Doc, cutoff: datetime) -> bool:
    """An ``in_progress`` stream's claim shows no report since ``cutoff`` (its liveness
    records may still show one)."""
    last = (doc.get("claim") or {}).get("last_feedback_at")
    return last is None or bool(last < cutoff)


def restart(doc: Doc, now: datetime) -> Transition:
    """An autorestart attempt that is due: failure -> restart -> pending, once however many
    sweeps run (guarded by the attempt and its due time)."""
    state = doc["autorestart"]
    attempt = int(state.get("current_attempt", 0)) + 1
    return Transition(
        [RESTART, PENDING],
        {
            "status": FAILURE,
            "version": doc["version"],
            "autorestart.status": AUTORESTART_IN_PROGRESS,
            "autorestart.current_attempt": attempt - 1,
            "autorestart.due_at": state["due_at"],
        }
        | _entering_guard(doc, PENDING),
        entering(PENDING, now)
        | {
            "autorestart.current_attempt": attempt,
            "autorestart.last_attempt_time": now,
            "autorestart.status": AUTORESTART_ENABLED,
            "autorestart.due_at": None,
        },
    )


def restart_due_query(now: datetime) -> Doc:
    """Which streams the autorestart sweep restarts at ``now``."""
    return {
        "status": FAILURE,
        "autorestart.status": AUTORESTART_IN_PROGRESS,
        "autorestart.due_at": {"$lte": now},
    }


def silent_query(cutoff: datetime) -> Doc:
    """Which streams may have a silent handler: claimed before ``cutoff``."""
    return {"status": IN_PROGRESS, "claim.claimed_at": {"$lt": cutoff}}


# --- groups ---------------------------------------------------------------------------


def attach(doc: Doc, group_id: str, group_name: str) -> Transition:
    """A ``pending`` stream joins a group: no status passed; it gets a token in the group's
    queue. Guarded by the stream as read (status, place in the queue, groups): one that left
    ``pending`` meanwhile is read again, and joins with the others (:func:`join_guard`)."""
    return Transition(
        [],
        {
            "status": doc["status"],
            "version": doc["version"],
            "queued_at": doc.get("queued_at"),
            "groups": doc.get("groups"),
        },
        {},
        push=join_update(group_id, group_name)["$push"],
        group_tokens=[group_id] if doc["status"] == PENDING else [],
    )


def out_of_group(group_id: str) -> Doc:
    """Streams an attach changes: those not in the group yet."""
    return {"groups": {"$ne": group_id}}


def join_guard(group_id: str) -> Doc:
    """Streams that join a group in one set-based write: those not in it and not
    ``pending`` (they need no token; a change into ``pending`` that read them before they
    joined fails its guard on the groups read, reads again, and queues the group's token).
    A ``pending`` one joins by :func:`attach`, its token through its outbox."""
    return {**out_of_group(group_id), "status": {"$ne": PENDING}}


def join_update(group_id: str, group_name: str) -> Doc:
    return {"$push": {"groups": group_id, "group_names": group_name}}


def detach_guard(group_id: str) -> Doc:
    """Streams that leave a group (a detach, a group's delete): those still in it. No status
    is passed and no token made: the group's queue tokens of a stream that left it no longer
    match a claim through that group (:meth:`shared.services.claims.ClaimService._match`)."""
    return {"groups": group_id}


def detach_update(group_id: str, group_name: str) -> Doc:
    return {"$pull": {"groups": group_id, "group_names": group_name}}
