"""A status change asked for by a client (``PATCH`` of one stream, or of every stream a
filter matches): what the change writes besides its path (one home for the rule).

Entering ``pending`` restarts the queue wait and the autorestart attempts; leaving
``in_progress`` ends the agent's claim.
"""

from __future__ import annotations

from datetime import datetime

from shared.core.types import Doc
from shared.domain import autorestart, statuses
from shared.store.changes import Change


def patch_change(
    doc: Doc, path: list[str], now: datetime, description: str | None = None
) -> Change | None:
    """The guarded change of ``doc`` through ``path`` (and to ``description``); None when
    it changes nothing."""
    fields: Doc = {}
    if description is not None:
        fields["description"] = description
    if path:
        target = path[-1]
        fields["status"] = target
        if target == statuses.PENDING:
            fields["queued_at"] = now
            fields["autorestart"] = autorestart.fresh_state(doc["autorestart"])
        if doc["status"] == statuses.IN_PROGRESS:
            fields["claim"] = None
    if not fields:
        return None
    return Change(
        doc,
        path,
        guard={"status": doc["status"], "version": doc["version"]},
        set=fields,
        when=now,
    )
