"""The runtime of a dramatiq worker process with periodic jobs (autorestart, janitor).

- dramatiq (RabbitMQ broker, AsyncIO middleware) runs the actors; their MongoDB and
  RabbitMQ clients are made lazily on the middleware's event loop (:class:`JobContext`).
- dramatiq has no scheduler: every replica runs a small loop that, for each periodic job,
  tries to start the job's period through a lease in MongoDB (:mod:`shared.leases`) and,
  when it wins, enqueues ``run_periodic(job)``. One replica wins each period; any replica
  may execute the message; a worker killed mid-job leaves the message unacknowledged, so
  it is redelivered and the job (idempotent) runs again.
- SIGTERM: stop scheduling, let dramatiq finish the jobs in hand (bounded), close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq
from prometheus_client import Counter, Gauge, start_http_server

from shared.broker import Broker, open_broker
from shared.heartbeats import beat_forever, instance_id
from shared.jobs_broker import RUN_PERIODIC, JobSender, jobs_queue, make_jobs_broker
from shared.leases import start_period
from shared.mongo import Database, open_database
from shared.settings import Settings
from shared.streams.changes import StreamChanges
from shared.tokens import BrokerTokenPublisher

log = logging.getLogger("luna_streams.worker")

JOBS_RUN = Counter("luna_streams_jobs", "Periodic jobs run", ["job"])
JOB_EFFECTS = Counter(
    "luna_streams_job_effects",
    "What jobs did: streams restarted or downgraded, tokens republished, logs deleted",
    ["job"],
)
JOB_LAST_RUN = Gauge("luna_streams_job_last_run_timestamp_seconds", "Last run", ["job"])


class JobContext:
    """Clients for actors, created on the loop that uses them, on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._database: Database | None = None
        self._broker: Broker | None = None
        self._lock: asyncio.Lock | None = None

    async def database(self) -> Database:
        await self._open()
        assert self._database is not None
        return self._database

    async def broker(self) -> Broker:
        await self._open()
        assert self._broker is not None
        return self._broker

    async def changes(self) -> StreamChanges:
        return StreamChanges(
            await self.database(),
            BrokerTokenPublisher(await self.broker()),
            timedelta(seconds=self.settings.change_sweep_delay),
        )

    async def _open(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            s = self.settings
            if self._database is None:
                assert s.mongo_uri, "LUNA_STREAMS_MONGO_URI is not set"
                self._database = await open_database(
                    s.mongo_uri, s.db_name, journal=s.mongo_journal
                )
            if self._broker is None:
                self._broker = await open_broker(
                    s.amqp_url,
                    s.queue_prefix,
                    queue_type=s.queue_type,
                    feedback_delivery_limit=s.feedback_delivery_limit,
                )

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()
        if self._database is not None:
            await self._database.close()


Job = Callable[[JobContext], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    run: Job
    period: float


@dataclass
class WorkerSpec:
    component: str  # "autorestart-worker" or "log-janitor"
    queue: str  # the dramatiq queue's suffix
    periodic: list[PeriodicJob]
    actors: dict[str, Callable[..., Awaitable[Any]]] = field(default_factory=dict)


def declare_actors(
    broker: dramatiq.Broker, spec: WorkerSpec, settings: Settings, context: JobContext
) -> None:
    queue = jobs_queue(settings, spec.queue)
    jobs = {job.name: job for job in spec.periodic}

    async def run_periodic(name: str) -> None:
        job = jobs[name]
        effects = await job.run(context)
        JOBS_RUN.labels(job=name).inc()
        JOB_EFFECTS.labels(job=name).inc(effects)
        JOB_LAST_RUN.labels(job=name).set(time.time())
        log.debug("job %s done: %d", name, effects)

    dramatiq.actor(
        actor_name=RUN_PERIODIC,
        queue_name=queue,
        broker=broker,
        max_retries=3,
        min_backoff=500,
        max_backoff=5000,
    )(run_periodic)
    for name, fn in spec.actors.items():

        def bind(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def actor(*args: Any) -> None:
                await fn(context, *args)

            return actor

        dramatiq.actor(
            actor_name=name,
            queue_name=queue,
            broker=broker,
            max_retries=10,
            min_backoff=500,
            max_backoff=30000,
        )(bind(fn))


async def schedule_forever(
    database: Database, spec: WorkerSpec, sender: JobSender, owner: str, tick: float = 0.5
) -> None:
    """Win each job's period through its lease, then enqueue the job."""
    while True:
        for job in spec.periodic:
            try:
                if await start_period(database, f"{spec.queue}:{job.name}", job.period, owner):
                    await sender.send(RUN_PERIODIC, job.name)
            except Exception as exc:
                log.warning("scheduling %s failed: %s", job.name, exc)
        await asyncio.sleep(tick)


async def _serve(spec: WorkerSpec, settings: Settings, stop: asyncio.Event) -> None:
    assert settings.mongo_uri, "LUNA_STREAMS_MONGO_URI is not set"
    database = await open_database(
        settings.mongo_uri, settings.db_name, journal=settings.mongo_journal
    )
    sender = JobSender(settings, spec.queue)
    owner = instance_id(spec.component)
    tasks = [
        asyncio.create_task(schedule_forever(database, spec, sender, owner)),
        asyncio.create_task(beat_forever(database, spec.component)),
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sender.close()
        await database.close()


def run_worker(spec: WorkerSpec, settings: Settings) -> int:
    """Serve ``spec`` until SIGTERM/SIGINT. Returns the exit code."""
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    broker = make_jobs_broker(settings)
    dramatiq.set_broker(broker)
    context = JobContext(settings)
    declare_actors(broker, spec, settings, context)
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=1000)
    worker.start()
    log.info(
        "%s running: queue %s, %d periodic jobs",
        spec.component,
        jobs_queue(settings, spec.queue),
        len(spec.periodic),
    )
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(_serve(spec, settings, stop))
    finally:
        log.info("stopping: finishing the jobs in hand (up to %.0f s)", settings.shutdown_timeout)
        stopper = threading.Thread(
            target=worker.stop, kwargs={"timeout": int(settings.shutdown_timeout * 1000)}
        )
        stopper.start()
        stopper.join(settings.shutdown_timeout + 5)
        broker.close()
        loop.close()
    return 0


def main(component: str, build: Callable[[Settings], WorkerSpec]) -> None:
    """The ``python -m`` entry of a worker process: settings, logging, run, exit code."""
    from shared.log_setup import setup_logging
    from shared.settings import load_settings

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, component)
    try:
        code = run_worker(build(settings), settings)
    except Exception as exc:
        log.error("%s failed: %s: %s", component, type(exc).__name__, exc)
        raise SystemExit(1) from None
    raise SystemExit(code)
