"""The one retry delay rule (:mod:`shared.core.backoff`)."""

from __future__ import annotations

import random

from shared.core.backoff import Backoff


def test_delays_grow_to_the_cap_within_their_jitter() -> None:
    random.seed(7)
    backoff = Backoff(first=1.0, cap=10.0, jitter=(0.5, 1.0))
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (50, 10.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= base
        assert max(delays) - min(delays) > base * 0.3  # jittered, not one value


def test_no_jitter_and_a_first_failure_of_zero_failures() -> None:
    exact = Backoff(first=0.5, cap=30.0, jitter=(1.0, 1.0))
    assert [exact.delay(n) for n in (0, 1, 2, 3)] == [0.5, 0.5, 1.0, 2.0]
