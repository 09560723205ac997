"""The library's Prometheus metrics: one home for their names, in the default registry.

Every process serves the default registry (a worker on its metrics port, the gateway beside
its own registry at ``/metrics``), so a metric the library declares here shows in whichever
process does the work: a claim's ``in_progress`` in the gateway's, a feedback's ``failure``
in the queue worker's, a ``handler_lost`` in the autorestart worker's.

Names follow Prometheus' conventions: a ``luna_streams_`` prefix, base units (seconds),
``_total`` on counters (prometheus_client adds it), and labels from small fixed sets (a
status, an outcome, a job's name, a dependency): never a stream, account or group id.
Every label value a panel or an alert reads is created at zero when the module loads, so a
series exists before the first event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from shared.domain.statuses import AUTORESTART_FAILED, LOGGED

#: seconds: from a millisecond to the feedback timeout's order and beyond
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# --- fleet ----------------------------------------------------------------------------------

STATUS_CHANGES = Counter(
    "luna_streams_stream_status_changes",
    "Streams entering a status (one per log row a change writes: handler_lost, failure, ...)",
    ["status"],
)
AUTORESTARTS = Counter(
    "luna_streams_autorestarts",
    "Autorestart attempts: restarted (failure -> pending), exhausted (attempts used up)",
    ["outcome"],
)
RESTARTED, EXHAUSTED = "restarted", "exhausted"

# --- processing -----------------------------------------------------------------------------

FEEDBACK_ITEMS = Counter(
    "luna_streams_feedback_items",
    "Feedback items applied by the queue worker, by outcome (modified, unmodified, rejected: "
    "in a batch the worker could not apply)",
    ["outcome"],
)
FEEDBACK_BATCHES = Counter(
    "luna_streams_feedback_batches",
    "Feedback batches the queue worker took, by outcome (applied, requeued: database "
    "outage, rejected: dead-lettered, expired: its gateway had answered)",
    ["outcome"],
)
FEEDBACK_LAG = Histogram(
    "luna_streams_feedback_lag_seconds",
    "From a feedback request's arrival at the gateway to its batch's application",
    buckets=LATENCY_BUCKETS,
)
FEEDBACK_APPLY = Histogram(
    "luna_streams_feedback_apply_duration_seconds",
    "Time the queue worker took to apply the feedback batches that arrived together",
    buckets=LATENCY_BUCKETS,
)

# --- every process's own health ------------------------------------------------------------

DEPENDENCY_UP = Gauge(
    "luna_streams_dependency_up",
    "1 when this process's connection to a dependency (mongodb, rabbitmq) answered its last "
    "probe, else 0",
    ["dependency"],
)
CONSUMER_UP = Gauge(
    "luna_streams_consumer_up",
    "1 while this worker's consumer runs (the feedback consumer, dramatiq's), else 0",
)
MONGODB, RABBITMQ = "mongodb", "rabbitmq"

# --- jobs -----------------------------------------------------------------------------------

LOG_ROWS_REMOVED = Counter(
    "luna_streams_log_rows_removed", "Stream log rows the log janitor removed"
)

for _status in LOGGED:
    STATUS_CHANGES.labels(status=_status)
for _outcome in (RESTARTED, EXHAUSTED):
    AUTORESTARTS.labels(outcome=_outcome)
for _outcome in ("modified", "unmodified", "rejected"):
    FEEDBACK_ITEMS.labels(outcome=_outcome)
for _outcome in ("applied", "requeued", "rejected", "expired"):
    FEEDBACK_BATCHES.labels(outcome=_outcome)
for _dependency in (MONGODB, RABBITMQ):
    DEPENDENCY_UP.labels(dependency=_dependency)


class LandedChange(Protocol):
    """What :func:`count_changes` reads of a change (:class:`shared.store.changes.Change`)."""

    @property
    def entries(self) -> list[dict[str, Any]]: ...

    @property
    def set(self) -> dict[str, Any]: ...


def count_entries(entries: Iterable[dict[str, Any]]) -> None:
    """Count the statuses of outbox entries written (one log row each; an entry with only
    a group's token has none)."""
    for entry in entries:
        if "log" in entry:
            STATUS_CHANGES.labels(status=str(entry["log"]["status"])).inc()


def count_changes(landed: Iterable[LandedChange]) -> None:
    """Count the statuses that landed changes entered (one per log row), and the failures
    that used up a stream's autorestart attempts."""
    for change in landed:
        count_entries(change.entries)
        if change.set.get("autorestart.status") == AUTORESTART_FAILED:
            AUTORESTARTS.labels(outcome=EXHAUSTED).inc()


#: the AMQP header in which the gateway gives a feedback batch the time (Unix seconds) its
#: request arrived, so the queue worker can tell how far feedback lags
RECEIVED_AT = "x-luna-received-at"


def feedback_applied(
    outcomes: Sequence[tuple[int, int]], received_at: Iterable[object], seconds: float
) -> None:
    """Batches applied together: each one's (modified, unmodified) counts, the time each
    request arrived at its gateway (absent from an older gateway's batch), and how long the
    application took."""
    FEEDBACK_APPLY.observe(seconds)
    FEEDBACK_BATCHES.labels(outcome="applied").inc(len(outcomes))
    FEEDBACK_ITEMS.labels(outcome="modified").inc(sum(m for m, _ in outcomes))
    FEEDBACK_ITEMS.labels(outcome="unmodified").inc(sum(u for _, u in outcomes))
    now = time.time()
    for arrived in received_at:
        if isinstance(arrived, int | float) and not isinstance(arrived, bool):
            FEEDBACK_LAG.observe(max(0.0, now - float(arrived)))
