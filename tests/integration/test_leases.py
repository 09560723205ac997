"""Leases: N replicas of a dramatiq worker run each periodic job once per period.

Two real autorestart-worker processes share one database; each job's lease document
(``{_id: "<queue>:<job>", runs, last_run_at, owner}``) counts the periods started. With a
1 s period the two replicas together start about one run per second, not two; when the
replica that owns a job is killed (-9), the other one carries on with it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from shared.core.settings import Settings
from shared.runtime.job_worker import TICK  # how often the scheduler looks at the leases
from shared.store.mongo import Database
from tests.processes import Component, running, worker
from tests.waits import wait_for

pytestmark = pytest.mark.slow

PERIOD = 1.0
JOBS = ("autorestart_sweep", "downgrade", "reconcile", "outbox_sweep")
WINDOW = 6.0


def short(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "autorestart_sweep_interval": PERIOD,
            "stream_status_obsoleting_interval": PERIOD,
            "reconcile_interval": PERIOD,
            "change_sweep_interval": PERIOD,
            "shutdown_timeout": 5.0,
        }
    )


def owner_of(component: Component) -> str:
    assert component.process is not None
    return f"autorestart-worker:{socket.gethostname()}:{component.process.pid}"


async def leases(database: Database) -> dict[str, dict[str, Any]]:
    docs = await database.leases.find({}).to_list()
    return {doc["_id"]: doc for doc in docs}


def lease_id(job: str) -> str:
    return f"autorestart:{job}"


async def test_two_replicas_run_each_job_once_per_period(
    settings: Settings, database: Database
) -> None:
    s = short(settings)
    with running(worker("autorestart_worker", s), worker("autorestart_worker", s)) as (one, two):
        owners = {owner_of(one), owner_of(two)}

        async def all_jobs_started() -> bool:
            found = await leases(database)
            return all(lease_id(job) in found for job in JOBS)

        await wait_for(all_jobs_started, timeout=30)

        # both replicas are up (each writes its heartbeat on start) before the window opens
        async def both_up() -> bool:
            ids = await database.heartbeats.distinct("_id")
            return owners <= set(ids)

        await wait_for(both_up, timeout=30)

        before = await leases(database)
        started = time.monotonic()
        seen: dict[str, set[str]] = {job: set() for job in JOBS}
        while time.monotonic() - started < WINDOW:
            for job in JOBS:
                doc = (await leases(database))[lease_id(job)]
                seen[job].add(doc["owner"])
            await asyncio.sleep(0.3)
        after = await leases(database)
        elapsed = time.monotonic() - started

    for job in JOBS:
        runs = after[lease_id(job)]["runs"] - before[lease_id(job)]["runs"]
        # once per period: between elapsed / (PERIOD + TICK) and elapsed / PERIOD runs
        # (a loaded machine may delay a tick); without the lease, two replicas would start
        # about twice as many, and one replica winning every tick four times as many
        assert elapsed / (PERIOD + TICK) - 2 <= runs <= elapsed / PERIOD + 1, (job, runs)
        assert seen[job] <= owners, seen[job]
        assert after[lease_id(job)]["last_run_at"] > before[lease_id(job)]["last_run_at"]


async def test_killed_owner_hands_its_jobs_to_the_other_replica(
    settings: Settings, database: Database
) -> None:
    s = short(settings)
    with running(worker("autorestart_worker", s), worker("autorestart_worker", s)) as replicas:
        by_owner = {owner_of(c): c for c in replicas}

        async def started() -> bool:
            return lease_id("downgrade") in await leases(database)

        await wait_for(started, timeout=30)
        doc = (await leases(database))[lease_id("downgrade")]
        victim = by_owner[doc["owner"]]
        (survivor_owner,) = set(by_owner) - {doc["owner"]}
        victim.kill()
        runs_at_kill = doc["runs"]

        async def survivor_runs_it() -> bool:
            now = (await leases(database))[lease_id("downgrade")]
            return bool(now["runs"] >= runs_at_kill + 3 and now["owner"] == survivor_owner)

        await wait_for(survivor_runs_it, timeout=20)
        # every job, not only the one watched, is now started by the survivor
        runs = {job: (await leases(database))[lease_id(job)]["runs"] for job in JOBS}

        async def all_advance() -> bool:
            now = await leases(database)
            return all(
                now[lease_id(job)]["runs"] >= runs[job] + 2
                and now[lease_id(job)]["owner"] == survivor_owner
                for job in JOBS
            )

        await wait_for(all_advance, timeout=20)
        assert victim.process is not None and victim.process.returncode == -9
