"""The dramatiq workers (the autorestart worker and the log janitor), as dramatiq is meant to
be used.

- Async actors on the :class:`~dramatiq.middleware.AsyncIO` middleware's event loop, and no
  other loop does job work: :class:`JobClients`, a middleware, opens the MongoDB and
  RabbitMQ clients on that loop when the worker has booted and closes them when it has shut
  down (``after_worker_shutdown``, not ``before_worker_shutdown``: the actors in flight keep
  their clients until they finish).
- Periodic jobs: dramatiq has no scheduler, so :class:`PeriodicJobs`, a middleware, runs one
  task on the same loop that, for each job, tries to start the job's period through its lease
  in MongoDB (:mod:`shared.store.leases`) and, when it wins, sends the job's actor with
  ``actor.send()``. One replica wins each period; any replica may run the message; a worker
  killed mid-job leaves the message unacknowledged, so it is redelivered and the job
  (idempotent) runs again. The same task writes the process's heartbeat.
- The process is a :class:`~shared.runtime.lifecycle.Component` (:class:`JobWorker`): start
  boots the
  dramatiq worker; on SIGTERM scheduling stops, the jobs in hand finish within the shutdown
  bound (dramatiq requeues what it had prefetched) and the counts are logged.
- With traces on (:mod:`shared.telemetry.tracing`), :class:`JobTracing`, a middleware, carries the
  trace context in each message: a job's run continues the trace of its sending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name
from dramatiq.errors import BrokerError
from dramatiq.middleware import AsyncIO, Middleware
from prometheus_client import Counter, Gauge
from pymongo.errors import PyMongoError

from shared.core.clock import now_utc
from shared.core.errors import BackendUnavailable
from shared.core.settings import CommonSettings, JobWorkerSettings, node_urls
from shared.messaging.broker import Broker, open_configured_broker
from shared.messaging.publisher import BrokerTokenPublisher
from shared.runtime.heartbeats import beat_forever, instance_id
from shared.runtime.lifecycle import Readiness, never_broken
from shared.runtime.probes import probe_forever
from shared.store.changes import StreamChanges
from shared.store.leases import next_start, start_period
from shared.store.mongo import Database, open_configured_database
from shared.telemetry import tracing

log = logging.getLogger("luna_streams.jobs")

AUTORESTART = "autorestart"
JANITOR = "janitor"

#: seconds between two looks at the leases
TICK = 0.5

JOBS_RUN = Counter("luna_streams_jobs", "Periodic jobs run", ["job"])
JOB_EFFECTS = Counter(
    "luna_streams_job_effects",
    "What jobs did: streams restarted or downgraded, tokens republished, logs deleted",
    ["job"],
)
JOB_LAST_RUN = Gauge("luna_streams_job_last_run_timestamp_seconds", "Last run", ["job"])
JOB_FAILURES = Counter(
    "luna_streams_job_failures", "Periodic job runs that raised (dramatiq retries them)", ["job"]
)


def jobs_queue(settings: CommonSettings, kind: str) -> str:
    """Each worker kind has its own dramatiq queue (it only knows its own actors)."""
    return f"{settings.queue_prefix}.jobs.{kind}"


class JobClients(Middleware):
    """The clients the actors use, opened on the AsyncIO middleware's loop."""

    def __init__(self, settings: JobWorkerSettings) -> None:
        self.settings = settings
        self._database: Database | None = None
        self._broker: Broker | None = None
        self._changes: StreamChanges | None = None
        self._opened = asyncio.Event()  # bound to the loop that first waits on it
        #: why the clients could not be opened (the process then fails its start)
        self.error: BaseException | None = None

    @property
    def database(self) -> Database:
        assert self._database is not None, "the worker has not booted"
        return self._database

    @property
    def broker(self) -> Broker:
        assert self._broker is not None, "the worker has not booted"
        return self._broker

    @property
    def changes(self) -> StreamChanges:
        """The process's one change writer: its record of the rows it wrote
        (:class:`~shared.store.changes.WrittenRows`) carries over from job run to job run."""
        assert self._changes is not None, "the worker has not booted"
        return self._changes

    def database_if_open(self) -> Database | None:
        return self._database

    def broker_probe(self) -> Callable[[], Awaitable[bool]] | None:
        return self._broker.is_open if self._broker is not None else None

    async def wait_open(self) -> None:
        await self._opened.wait()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _loop_thread().run_coroutine(self._open())

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _loop_thread().run_coroutine(self._close())

    async def _open(self) -> None:
        try:
            self._database = await open_configured_database(self.settings)
            self._broker = await open_configured_broker(self.settings)
            self._changes = StreamChanges(self._database, BrokerTokenPublisher(self._broker))
        except Exception as exc:  # not swallowed: JobWorker.start raises it (exit code 1)
            self.error = exc
            return
        self._opened.set()

    async def _close(self) -> None:
        broker, database = self._broker, self._database
        self._broker = self._database = self._changes = None
        if broker is not None:
            await broker.close()
        if database is not None:
            await database.close()


Job = Callable[[JobClients], Awaitable[int]]
#: a task a worker runs beside its jobs, on their loop, until it stops (the fleet census)
Background = Callable[[JobClients], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    run: Job
    period: float


@dataclass(frozen=True, slots=True)
class JobWorkerSpec:
    component: str  # "autorestart-worker" or "log-janitor"
    kind: str  # AUTORESTART or JANITOR: the queue's and the leases' name
    periodic: list[PeriodicJob]
    background: tuple[Background, ...] = ()


def declare_actors(
    broker: dramatiq.Broker, spec: JobWorkerSpec, queue: str, clients: JobClients
) -> dict[str, dramatiq.Actor[Any, Any]]:
    """One async actor per periodic job, on ``queue``."""
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for job in spec.periodic:
        for metric in (JOBS_RUN, JOB_EFFECTS, JOB_FAILURES, JOB_LAST_RUN):
            metric.labels(job=job.name)  # a series from the start, at zero

        def bind(job: PeriodicJob) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                try:
                    effects = await job.run(clients)
                except Exception:
                    JOB_FAILURES.labels(job=job.name).inc()
                    raise
                JOBS_RUN.labels(job=job.name).inc()
                JOB_EFFECTS.labels(job=job.name).inc(effects)
                JOB_LAST_RUN.labels(job=job.name).set(time.time())
                log.debug("job %s done: %d", job.name, effects)

            return run

        actors[job.name] = dramatiq.actor(
            actor_name=job.name,
            queue_name=queue,
            broker=broker,
            max_retries=3,
            min_backoff=500,
            max_backoff=5000,
        )(bind(job))
    return actors


class PeriodicJobs(Middleware):
    """Start each job once per period however many replicas run; write the heartbeat."""

    def __init__(
        self,
        spec: JobWorkerSpec,
        clients: JobClients,
        actors: Mapping[str, dramatiq.Actor[Any, Any]],
        owner: str,
    ) -> None:
        self.spec = spec
        self.clients = clients
        self.actors = actors
        self.owner = owner
        self._task: concurrent.futures.Future[None] | None = None
        self.sent = 0
        #: whether the worker's consumers run (set by :class:`JobWorker`)
        self.consumer_up: Callable[[], bool] = lambda: False
        #: per job, before when no period can start (no need to ask the lease)
        self._not_before: dict[str, datetime] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._task = asyncio.run_coroutine_threadsafe(self._run(), _loop_thread().loop)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        await self.clients.wait_open()
        clients = self.clients
        tasks = [
            asyncio.create_task(beat_forever(clients.database, self.spec.component)),
            asyncio.create_task(
                probe_forever(clients.database_if_open, clients.broker_probe, self.consumer_up)
            ),
            *(asyncio.create_task(task(clients)) for task in self.spec.background),
        ]
        try:
            while True:
                for job in self.spec.periodic:
                    await self._schedule(job)
                await asyncio.sleep(TICK)
        finally:
            for task in tasks:
                task.cancel()

    async def _schedule(self, job: PeriodicJob) -> None:
        lease = f"{self.spec.kind}:{job.name}"
        now = now_utc()
        if now < self._not_before.get(job.name, now):
            return
        try:
            database = self.clients.database
            if await start_period(database, lease, job.period, self.owner, now=now):
                self._not_before[job.name] = now + timedelta(seconds=job.period)
                await asyncio.to_thread(self.actors[job.name].send)
                self.sent += 1
            else:
                self._not_before[job.name] = await next_start(database, lease, job.period, now)
        except (BackendUnavailable, PyMongoError, BrokerError) as exc:
            log.warning("%s not scheduled: %s: %s", job.name, type(exc).__name__, exc)
        except Exception:  # a bug: said with its traceback; the schedule must go on
            log.exception("%s not scheduled", job.name)


class JobCounts(Middleware):
    """What the worker's actors did, for the log line at shutdown."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            self.done += 1
        else:
            self.failed += 1


class JobTracing(Middleware):
    """W3C trace context through dramatiq messages, which dramatiq publishes with pika (no
    instrumentation sees them, and OpenTelemetry maintains none for dramatiq).

    Sending: a PRODUCER span from ``before_enqueue`` to ``after_enqueue`` (in the sending
    thread), whose context goes in the message's ``trace_context`` option. Running: a
    CONSUMER span, its child, current from ``before_process_message`` to
    ``after_process_message`` in the worker thread; the AsyncIO middleware runs the actor's
    coroutine in a copy of that thread's context, so the job's database commands and
    publishes are the span's children.
    """

    OPTION = "trace_context"

    def __init__(self) -> None:
        self._sending = threading.local()
        #: the runs in progress, by message id (one per worker thread at most)
        self._running: dict[str, tracing.Scope] = {}

    def _end_send(self, failed: bool) -> None:
        scope: tracing.Scope | None = getattr(self._sending, "scope", None)
        self._sending.scope = None
        if scope is not None:
            scope.close(ConnectionError("not enqueued") if failed else None)

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        self._end_send(failed=True)  # a scope left open: that attempt raised (retried now)
        self._sending.scope = tracing.begin(
            f"{message.queue_name} publish",
            kind="producer",
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
            },
        )
        carrier: dict[str, str] = {}
        tracing.inject(carrier)
        message.options[self.OPTION] = carrier

    def after_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        self._end_send(failed=False)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        scope = tracing.begin(
            f"{message.actor_name} process",
            kind="consumer",
            carrier=message.options.get(self.OPTION) or {},
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": message.queue_name,
                "messaging.message.id": message.message_id,
                "messaging.operation.type": "process",
            },
        )
        if scope is not None:
            self._running[message.message_id] = scope

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        scope = self._running.pop(message.message_id, None)
        if scope is not None:
            scope.close(exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)


class JobsBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker, its queues of ``LUNA_STREAMS_QUEUE_TYPE``.

    dramatiq declares classic queues, and a classic queue lives on one node: in a cluster
    that loses that node, the jobs would stop until it came back. Quorum queues (the
    default) are replicated, as the token and feedback queues are; dramatiq has no option
    for the queue type, so the two methods that build its declarations add it.
    """

    def __init__(self, *, queue_type: str, **kwargs: Any) -> None:
        self.queue_type = queue_type
        super().__init__(**kwargs)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        return {**arguments, "x-queue-type": self.queue_type}

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=xq_name(queue_name),
            durable=True,
            arguments={"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": self.queue_type},
        )


def _loop_thread() -> Any:
    thread = get_event_loop_thread()
    assert thread is not None, "the AsyncIO middleware has not booted"
    return thread


class JobWorker:
    """A dramatiq worker process as a :class:`~shared.runtime.lifecycle.Component`."""

    def __init__(self, spec: JobWorkerSpec, settings: JobWorkerSettings) -> None:
        self.name = spec.component
        self.settings = settings
        self.readiness = Readiness()
        self.queue = jobs_queue(settings, spec.kind)
        # pika tries the nodes in order, at every (re)connection of every thread
        self.broker = JobsBroker(
            queue_type=settings.queue_type,
            url=node_urls(settings.amqp_url),
            confirm_delivery=True,
        )
        self.clients = JobClients(settings)
        self.counts = JobCounts()
        actors = declare_actors(self.broker, spec, self.queue, self.clients)
        self.periodic = PeriodicJobs(spec, self.clients, actors, instance_id(spec.component))
        self.periodic.consumer_up = self.consuming
        for middleware in (AsyncIO(), self.clients, self.periodic, self.counts):
            self.broker.add_middleware(middleware)
        if tracing.enabled():  # else no hook at all
            self.broker.add_middleware(JobTracing())
        self.worker = dramatiq.Worker(
            self.broker, worker_threads=settings.worker_threads, worker_timeout=1000
        )
        self._started = False

    def consuming(self) -> bool:
        """Every consumer thread of the dramatiq worker runs."""
        consumers = list(self.worker.consumers.values())
        return bool(consumers) and all(c.is_alive() and c.running for c in consumers)

    async def start(self) -> None:
        await asyncio.to_thread(self.worker.start)
        self._started = True
        if self.clients.error is not None:
            raise self.clients.error
        log.info("%s consuming %s", self.name, self.queue)

    async def broken(self) -> str:
        return await never_broken()  # dramatiq's consumers reconnect by themselves

    async def stop_taking_work(self) -> None:
        self.periodic.stop()

    async def finish(self, timeout: float) -> Mapping[str, int]:  # noqa: ASYNC109 - a bound
        await self._stop_worker(timeout)
        return {
            "jobs done": self.counts.done,
            "failed": self.counts.failed,
            "periods started": self.periodic.sent,
        }

    async def close(self) -> None:
        await self._stop_worker(self.settings.shutdown_timeout)
        self.broker.close()

    async def _stop_worker(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound
        if self._started:
            self._started = False
            await asyncio.to_thread(self.worker.stop, int(timeout * 1000))
