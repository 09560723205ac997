"""Metrics off, for ``bench/bench_metrics.py`` only: every process of a benchmark's "off"
stack imports this module at start (``PYTHONPATH``), before any of ours.

It turns prometheus_client's counters, gauges and histograms into no-ops and stops the
probes and the fleet census, so the stack does the same work as with metrics on, minus
everything metrics cost. Nothing of luna-streams imports it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import metrics

import shared.runtime.probes
import shared.services.fleet


def _nothing(self: object, *args: Any, **kwargs: Any) -> None:
    return None


def _same(self: object, *args: Any, **kwargs: Any) -> object:
    return self


async def _idle(*args: Any, **kwargs: Any) -> None:
    await asyncio.Event().wait()


metrics.MetricWrapperBase.labels = _same
for _kind, _names in (
    (metrics.Counter, ("inc",)),
    (metrics.Gauge, ("inc", "dec", "set", "set_function")),
    (metrics.Histogram, ("observe",)),
):
    for _name in _names:
        setattr(_kind, _name, _nothing)
shared.runtime.probes.probe_forever = _idle
shared.services.fleet.census_forever = _idle
