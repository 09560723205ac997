"""The stream status machine (behaviour reference, section 2): one place for every rule.

Each function answers which statuses a change passes through, in order; every status in
that path gets one stream log row. Callers apply the change with one compare-and-set.

This module is the one home of every status name and status set, stream and autorestart:
every other module imports them from here (the ``Literal`` types too, for the models and
the OpenAPI enums), none spells them again.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from shared.core.errors import BadStreamStatus, CannotCancelFinished, CannotStopInProgress

PENDING: Final = "pending"
IN_PROGRESS: Final = "in_progress"
DONE: Final = "done"
PAUSE: Final = "pause"
CANCEL: Final = "cancel"
FAILURE: Final = "failure"
RESTART: Final = "restart"  # transient: logs only
HANDLER_LOST: Final = "handler_lost"  # transient: logs only
NOT_FOUND: Final = "not_found"  # only in feedback answers
DELETED: Final = "deleted"  # only in logs

#: statuses a stream can be seen in
STORED: Final = (PENDING, IN_PROGRESS, DONE, PAUSE, CANCEL, FAILURE)
#: statuses a stream log row can carry
LOGGED: Final = (*STORED, RESTART, HANDLER_LOST, DELETED)
CREATE_STATUSES: Final = (PENDING, PAUSE)
PATCH_STATUSES: Final = (PENDING, PAUSE, CANCEL)
FEEDBACK_STATUSES: Final = (IN_PROGRESS, DONE, FAILURE)
FINISHED: Final = (DONE, FAILURE)

#: a stream's autorestart state (``autorestart.status``), a status set of its own
AUTORESTART_ENABLED: Final = "enabled"
AUTORESTART_DISABLED: Final = "disabled"
AUTORESTART_IN_PROGRESS: Final = "in_progress"
AUTORESTART_FAILED: Final = "failed"
AUTORESTART_STATUSES: Final = (
    AUTORESTART_ENABLED,
    AUTORESTART_DISABLED,
    AUTORESTART_IN_PROGRESS,
    AUTORESTART_FAILED,
)

# The same sets as types, for models and the OpenAPI enums (a Literal cannot be built from
# the constants above in a way type checkers accept); the check below keeps them equal,
# member for member and in order (the order of each enum in the spec).
#: the stream view's ``status``
StoredStatus = Literal["pending", "in_progress", "done", "pause", "cancel", "failure"]
#: the reference's ``stream_status``: a log row's ``status``, the ``statuses`` filters
LoggedStatus = Literal[
    "pending",
    "in_progress",
    "done",
    "pause",
    "cancel",
    "failure",
    "restart",
    "handler_lost",
    "deleted",
]
#: a feedback item's ``status``
FeedbackStatus = Literal["in_progress", "done", "failure"]
#: the stream view's ``autorestart.status``
AutorestartStatus = Literal["enabled", "disabled", "in_progress", "failed"]


def _same(kind: object, values: tuple[str, ...]) -> None:
    if get_args(kind) != values:
        raise RuntimeError(f"{kind} differs from {values}")


_same(StoredStatus, STORED)
_same(LoggedStatus, LOGGED)
_same(FeedbackStatus, FEEDBACK_STATUSES)
_same(AutorestartStatus, AUTORESTART_STATUSES)


def _check(status: str, permitted: tuple[str, ...]) -> None:
    if status not in permitted:
        raise BadStreamStatus(status=status, permitted=", ".join(permitted))


def create_path(status: str) -> list[str]:
    """∅ -> pending | pause."""
    _check(status, CREATE_STATUSES)
    return [status]


def replace_path(status: str) -> list[str]:
    """PUT: any status -> restart -> pending | pause (the version is bumped)."""
    _check(status, CREATE_STATUSES)
    return [RESTART, status]


def patch_path(stream_id: str, current: str, target: str, source_type: str) -> list[str]:
    """PATCH status: the statuses to pass through; [] when the stream is already there.

    - pause of an in-progress video file is refused (39003): it cannot be stopped midway;
    - cancel of a finished stream (done, failure) is refused (39005);
    - back to pending from in_progress restarts processing: in_progress -> restart -> pending.
    """
    _check(target, PATCH_STATUSES)
    if target == current:
        return []
    if target == PAUSE and current == IN_PROGRESS and source_type == "videofile":
        raise CannotStopInProgress(stream_id=stream_id)
    if target == CANCEL and current in FINISHED:
        raise CannotCancelFinished(stream_id=stream_id)
    if target == PENDING and current == IN_PROGRESS:
        return [RESTART, PENDING]
    return [target]


def downgrade_path() -> list[str]:
    """A handler went silent: in_progress -> handler_lost -> restart -> pending."""
    return [HANDLER_LOST, RESTART, PENDING]


def autorestart_path() -> list[str]:
    """An autorestart attempt: failure -> restart -> pending."""
    return [RESTART, PENDING]
