"""How long to wait before trying again: one rule for every retry loop of the processes.

Exponential with a cap, and jittered so that the replicas that failed together do not all
come back together. A few lines of our own rather than a retry library (tenacity, backoff):
the loops that retry here (a requeued feedback batch, a change stream reopened, a webhook
delivery scheduled in MongoDB) do their own waiting, on their own terms (a batch goes back
to RabbitMQ, a delivery gets a ``due_at``), and need the delay only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``first`` seconds after the first failure, ``factor`` times more after each next one,
    at most ``cap``; each delay drawn within ``jitter`` (fractions) of that."""

    first: float
    cap: float
    factor: float = 2.0
    jitter: tuple[float, float] = (0.5, 1.0)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
        base = min(self.cap, self.first * self.factor ** max(0, failures - 1))
        low, high = self.jitter
        return base * random.uniform(low, high)
