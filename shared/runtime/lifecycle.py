"""One lifecycle for the four processes: the gateway, the queue worker, the autorestart worker
and the log janitor.

1. start (open clients, begin serving); a failure here is one clear line and exit code 1;
2. ready;
3. on SIGTERM or SIGINT: not ready at once (the gateway's ``/healthcheck`` answers 503 from
   that moment), then stop taking work;
4. finish what is in hand within ``LUNA_STREAMS_SHUTDOWN_TIMEOUT`` (what is left is
   redelivered: every consumer acknowledges after its write);
5. log the counts, close, exit 0.

A worker serves its Prometheus metrics (the default registry: its jobs, the process) on
``LUNA_STREAMS_METRICS_HOST`` and a port setting of its own (:data:`METRICS_PORT_FIELDS`), from
before it starts until it exits; the gateway serves them at ``/metrics`` on its own port.

Traces are turned on before anything else is made when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(:mod:`shared.telemetry.tracing`), so that every client and the gateway's app are instrumented.

A component that can no longer work (:meth:`Component.broken` returns: a consumer stalled
or down past its bound) takes the same way out with exit code 1, so its supervisor
restarts it. Every process is a :class:`Component`; :func:`serve` is the only place this
sequence is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import NoReturn, Protocol, TypeVar

from prometheus_client import start_http_server

from shared.core.errors import ConfigurationError
from shared.core.settings import (
    METRICS_PORT_FIELDS,
    CommonSettings,
    WorkerSettings,
    env_name,
    listen_address,
    load_settings,
    mask_uri,
)
from shared.telemetry import tracing
from shared.telemetry.log_setup import setup_logging

log = logging.getLogger("luna_streams.lifecycle")

#: how much longer than its bound :meth:`Component.finish` may take before it is abandoned
FINISH_GRACE = 5.0


class Readiness:
    """Whether the process takes work: false until it is ready, and again from the moment
    a stop is asked for. Read by the gateway's healthcheck."""

    def __init__(self, ready: bool = False) -> None:
        self.ready = ready


class Component(Protocol):
    """What :func:`serve` runs. Implementations keep their counts themselves."""

    name: str
    readiness: Readiness

    async def start(self) -> None:
        """Open clients and begin taking work."""

    async def broken(self) -> str:
        """Return a reason when the component can no longer work (it may never return)."""
        ...

    async def stop_taking_work(self) -> None:
        """Take no new work (stop consuming, stop listening)."""

    async def finish(self, timeout: float) -> Mapping[str, int]:  # noqa: ASYNC109 - a bound
        """Finish the work in hand within ``timeout`` seconds; the counts to log."""
        ...

    async def close(self) -> None:
        """Close every client (also after a failed start)."""


async def never_broken() -> str:
    """:meth:`Component.broken` of a component whose failures are reported elsewhere (the
    gateway's in ``/healthcheck``) or repaired by its library (dramatiq reconnects)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def serve(component: Component, shutdown_timeout: float) -> int:
    """Run ``component`` through its lifecycle; the process's exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: %s received: not ready, stopping", component.name, sig.name)
        component.readiness.ready = False
        stop.set()

    # before start: a SIGTERM then stops cleanly (signals reach the main thread only)
    signals = (signal.SIGTERM, signal.SIGINT) if _in_main_thread() else ()
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await component.start()
        code = 0
        if not stop.is_set():
            component.readiness.ready = True
            log.info("%s ready", component.name)
            code = await _until_stopped(component, stop)
        component.readiness.ready = False
        await component.stop_taking_work()
        try:
            async with asyncio.timeout(shutdown_timeout + FINISH_GRACE):
                counts = await component.finish(shutdown_timeout)
        except TimeoutError:
            log.warning("%s: work in hand not finished in time", component.name)
            counts = {}
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        log.info("%s stopped%s", component.name, f": {shown}" if shown else "")
        return code
    finally:
        await component.close()
        for sig in signals:
            loop.remove_signal_handler(sig)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


async def _until_stopped(component: Component, stop: asyncio.Event) -> int:
    """Wait for a stop (0) or for the component to break (1)."""
    stopping = asyncio.ensure_future(stop.wait())
    broken = asyncio.ensure_future(component.broken())
    try:
        await asyncio.wait({stopping, broken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopping, broken):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if stop.is_set():
        return 0
    log.error("%s cannot work: %s; stopping", component.name, broken.result())
    return 1


S = TypeVar("S", bound=CommonSettings)


def serve_metrics(name: str, settings: CommonSettings) -> None:
    """Serve the Prometheus metrics of worker ``name`` when its port is set (a thread of
    prometheus_client's); a port that cannot be bound fails the start."""
    field = METRICS_PORT_FIELDS.get(name)
    if field is None or not isinstance(settings, WorkerSettings):
        return
    port: int = getattr(settings, field)
    if not port:
        return
    try:
        start_http_server(port, addr=settings.metrics_host)
    except OSError as exc:
        variable = env_name(type(settings), field)
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_host}:{port} ({variable}): {exc}"
        ) from None
    log.info("%s metrics on %s", name, listen_address(settings.metrics_host, port, "/metrics"))


def main(name: str, kind: type[S], build: Callable[[S], Component]) -> NoReturn:
    """The ``python -m`` entry of a process: its settings, logging, :func:`serve`, exit."""
    settings = load_settings(kind)
    setup_logging(settings.log_level, settings.log_format, name)
    try:
        tracing.setup(name)  # before any client or app is made: they are instrumented then
        serve_metrics(name, settings)
        code = asyncio.run(serve(build(settings), settings.shutdown_timeout))
    except Exception as exc:  # a failed start: one clear line, exit 1
        log.error("%s failed: %s: %s", name, type(exc).__name__, mask_uri(str(exc)))
        raise SystemExit(1) from None
    raise SystemExit(code)
