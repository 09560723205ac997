"""Wrong credentials from one address, counted: past a bound, that address waits (429).

Parameters (``LUNA_STREAMS_AUTH_*`` settings):

- ``max_failures``: wrong credentials one address may send in a window;
- ``window``: the window, in seconds; it starts with the address's first failure.

Each gateway counts for itself, in memory, for at most :data:`MAX_ADDRESSES` addresses (the
oldest windows go first): a guess at a token costs an attacker the same behind N gateways as
N times the bound, which a 256-bit token does not care about; what the bound stops is a
flood that makes every guess a database lookup.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Final

MAX_ADDRESSES: Final = 100_000


class FailureThrottle:
    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """Seconds ``address`` must wait before it may try again; None: it may now."""
        now = time.monotonic() if now is None else now
        entry = self._windows.get(address)
        if entry is None:
            return None
        started, count = entry
        if now - started >= self.window:
            del self._windows[address]
            return None
        if count < self.max_failures:
            return None
        return max(1, math.ceil(started + self.window - now))

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry = self._windows.get(address)
        if entry is None or now - entry[0] >= self.window:
            self._windows[address] = (now, 1)
            self._windows.move_to_end(address)
            while len(self._windows) > MAX_ADDRESSES:
                self._windows.popitem(last=False)
        else:
            self._windows[address] = (entry[0], entry[1] + 1)
