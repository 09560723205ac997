"""The statuses (behaviour reference, section 2): their names and sets. The machine that
moves a stream between them is :mod:`shared.domain.transitions`.

This module is the one home of every status name and status set, stream and autorestart:
every other module imports them from here (the ``Literal`` types too, for the models and
the OpenAPI enums), none spells them again.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

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
