"""Autorestart (behaviour reference, section 6): the rule, pure (the sweep that applies it
is :mod:`shared.services.restarts`).

- :func:`fresh_state`: a stream created, replaced or sent back to ``pending`` gets its
  settings with the attempts reset (``enabled``, or ``disabled`` when ``restart`` is 0);
- :func:`on_failure`: feedback that moves a stream with ``restart = 1`` to ``failure`` arms
  the next attempt in the same guarded update: ``autorestart.status = in_progress`` and
  ``autorestart.due_at = now + delay``; when ``attempt_count`` attempts are used up, the
  status becomes ``failed`` and the stream stays in ``failure``.

Every function takes ``now``: tests run the rule against an injected clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.core.types import Doc
from shared.domain.statuses import (
    AUTORESTART_DISABLED,
    AUTORESTART_ENABLED,
    AUTORESTART_FAILED,
    AUTORESTART_IN_PROGRESS,
)


def fresh_state(settings: dict[str, Any]) -> dict[str, Any]:
    """Autorestart settings plus a fresh state: attempts reset, armed or disabled."""
    return {
        "restart": settings["restart"],
        "attempt_count": settings["attempt_count"],
        "delay": settings["delay"],
        "current_attempt": 0,
        "last_attempt_time": None,
        "status": AUTORESTART_ENABLED if settings["restart"] else AUTORESTART_DISABLED,
    }


def on_failure(doc: Doc, now: datetime) -> Doc:
    """The fields a failure sets on ``doc``'s autorestart: the next attempt armed, the
    attempts used up, or nothing when autorestart is off."""
    autorestart = doc.get("autorestart") or {}
    if not autorestart.get("restart"):
        return {}
    attempt = int(autorestart.get("current_attempt", 0)) + 1
    if attempt > int(autorestart.get("attempt_count", 0)):
        return {"autorestart.status": AUTORESTART_FAILED, "autorestart.due_at": None}
    due_at = now + timedelta(seconds=float(autorestart.get("delay", 0)))
    return {"autorestart.status": AUTORESTART_IN_PROGRESS, "autorestart.due_at": due_at}
