"""OpenTelemetry traces: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, off and free otherwise.

Every process calls :func:`setup` at start (:func:`shared.runtime.lifecycle.main`). Without the
endpoint it returns at once and nothing of OpenTelemetry is even imported: the hot paths ask
:func:`enabled` (a global read) or get a shared null context, and the gateway and the
dramatiq workers add no middleware. With it, and with the ``tracing`` extra installed, it
sets a tracer provider exporting OTLP over HTTP (the SDK reads the standard ``OTEL_*``
variables: endpoint, headers, timeout, sampler, resource attributes; ``OTEL_SERVICE_NAME``
defaults to ``luna-streams-<component>``) and turns on the maintained instrumentations:

- ``aiohttp-server``: a SERVER span per request (it swaps ``aiohttp.web.Application`` for a
  subclass adding its middleware, so it must run before the gateway's app is made);
- ``aiohttp-client``: a CLIENT span per outgoing request (previews, webhooks), which carries
  ``traceparent`` to the agent or receiver;
- ``aio-pika``: a PRODUCER span per publish, which injects ``traceparent`` (and ``baggage``)
  into the message's headers, and a CONSUMER span around each consumer callback, which
  continues the publisher's trace;
- ``pymongo``: a CLIENT span per database command (a command listener, so only clients
  made after :func:`setup` are traced: every process opens its clients later).

What they cannot see is done here: the gateway's request id as the ``luna.request_id``
attribute of its request span, and as baggage, so that the queue worker tags the delivery
it belongs to (:func:`request_scope`, :func:`received`); the queue worker's application of
the batches that arrived together, which runs after their consumer callbacks returned
(:func:`span`, parented on the first batch's delivery and linked to the others'); and the
trace context through dramatiq messages, which dramatiq publishes with pika
(:func:`inject`, :func:`begin`; the middleware is :class:`shared.runtime.job_worker.JobTracing`).

Tests and benchmarks pass their own provider to :func:`install` (the SDK's global provider
can be set once per process) and :func:`uninstall` afterwards. pymongo has no way to remove
a listener: the first :func:`install` of a process registers one, which :func:`uninstall`
turns off and a later :func:`install` turns on again, with the first install's provider.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for real only when tracing is on
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("luna_streams.tracing")

#: the span attribute (and baggage entry) of the gateway's ``Luna-Request-Id``
REQUEST_ID = "luna.request_id"
#: the instrumentation scope of the spans this module makes
SCOPE = "luna_streams"
#: the variables that turn traces on (the second: traces only, the full URL)
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_NULL: AbstractContextManager[Any] = contextlib.nullcontext()


@dataclass(slots=True)
class _Installed:
    tracer: Tracer
    instrumentors: list[Any]


_installed: _Installed | None = None


def enabled() -> bool:
    """Whether traces are being made in this process."""
    return _installed is not None


def setup(component: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn traces on for process ``component`` when the environment asks for them;
    whether it did. An endpoint without the packages is one warning, and traces stay off."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'luna-streams[tracing]'): traces stay off (%s)",
            exc,
        )
        return False
    service = environ.get("OTEL_SERVICE_NAME") or f"luna-streams-{component}"
    # the SDK adds OTEL_RESOURCE_ATTRIBUTES, reads OTEL_TRACES_SAMPLER, and flushes at exit
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    # OTEL_BSP_*: queued and sent in batches by a thread of its own, never on a request
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("traces of %s exported over OTLP/HTTP", service)
    return True


def install(provider: TracerProvider) -> None:
    """Make spans with ``provider``: turn the instrumentations on, and this module's spans."""
    global _installed
    if _installed is not None:
        raise RuntimeError("tracing is installed already")
    from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    # BaseInstrumentor's module is "type: ignore" as a whole: mypy sees no class there
    instrumentors: list[Any] = [
        AioHttpServerInstrumentor(),
        AioHttpClientInstrumentor(),
        AioPikaInstrumentor(),
        PymongoInstrumentor(),
    ]
    with warnings.catch_warnings():
        # aiohttp discourages subclassing its Application, which is how aiohttp-server adds
        # its middleware (said once, when the subclass is made, here)
        warnings.filterwarnings(
            "ignore", "Inheritance class _InstrumentedApplication", DeprecationWarning
        )
        for instrumentor in instrumentors:
            instrumentor.instrument(tracer_provider=provider)
    _installed = _Installed(provider.get_tracer(SCOPE), instrumentors)


def uninstall() -> None:
    """Turn every instrumentation off again (tests and benchmarks)."""
    global _installed
    installed, _installed = _installed, None
    if installed is not None:
        for instrumentor in reversed(installed.instrumentors):
            instrumentor.uninstrument()


@contextlib.contextmanager
def _request_scope(installed: _Installed, request_id: str) -> Iterator[None]:
    from opentelemetry import baggage, context, trace

    trace.get_current_span().set_attribute(REQUEST_ID, request_id)
    token = context.attach(baggage.set_baggage(REQUEST_ID, request_id))
    try:
        yield
    finally:
        context.detach(token)


def request_scope(request_id: str) -> AbstractContextManager[Any]:
    """A gateway request's scope: its span tagged with the request id, which goes on as
    baggage in whatever the request publishes (the feedback batch)."""
    if _installed is None:
        return _NULL
    return _request_scope(_installed, request_id)


def received(headers: Mapping[str, Any] | None) -> Context | None:
    """In a consumer callback, the context its work continues: the aio-pika instrumentation's
    CONSUMER span (else the publisher's, from ``headers``), tagged with the request id the
    message carries as baggage. None when tracing is off."""
    if _installed is None:
        return None
    from opentelemetry import baggage, context, propagate, trace

    current = context.get_current()
    span = trace.get_current_span(current)
    if not span.get_span_context().is_valid:
        current = propagate.extract(dict(headers or {}))
    request_id = baggage.get_baggage(REQUEST_ID, current)
    if request_id is not None:
        span.set_attribute(REQUEST_ID, str(request_id))
    return current


@contextlib.contextmanager
def _span(
    installed: _Installed,
    name: str,
    parents: Sequence[Context],
    attributes: Mapping[str, Any] | None,
) -> Iterator[None]:
    from opentelemetry import trace

    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in parents[1:]]
    with installed.tracer.start_as_current_span(
        name,
        context=parents[0] if parents else None,
        links=links,
        attributes=dict(attributes or {}),
    ):
        yield


def span(
    name: str,
    parents: Sequence[Context | None] = (),
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Any]:
    """An INTERNAL span around a block, the child of the first of ``parents`` (else of the
    current span) and linked to the others: work done for several messages at once."""
    if _installed is None:
        return _NULL
    return _span(_installed, name, [p for p in parents if p is not None], attributes)


@contextlib.contextmanager
def _attached(parent: Context) -> Iterator[None]:
    from opentelemetry import context

    token = context.attach(parent)
    try:
        yield
    finally:
        context.detach(token)


def attached(parent: Context | None) -> AbstractContextManager[Any]:
    """Run a block in ``parent`` (what :func:`received` returned): what it publishes or
    writes belongs to that message's trace."""
    if parent is None:
        return _NULL
    return _attached(parent)


def inject(carrier: dict[str, str]) -> None:
    """Write the current trace context (``traceparent``, ``tracestate``, ``baggage``) into
    ``carrier``, for a message that no instrumentation publishes."""
    if _installed is not None:
        from opentelemetry import propagate

        propagate.inject(carrier)


class Scope:
    """A span that is current from :func:`begin` until :meth:`close`, in one thread (a
    dramatiq hook opens it, a later hook of the same thread closes it)."""

    def __init__(self, span: Span, token: Token[Context]) -> None:
        self.span = span
        self._token = token

    def close(self, exception: BaseException | None = None) -> None:
        from opentelemetry import context, trace

        if exception is not None:
            self.span.record_exception(exception)
            self.span.set_status(trace.StatusCode.ERROR, type(exception).__name__)
        self.span.end()
        context.detach(self._token)


def begin(
    name: str,
    *,
    kind: str = "internal",
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Scope | None:
    """Start a span of ``kind`` (``producer``, ``consumer``, ...) and make it current: the
    child of the context in ``carrier`` when given (a received message's), else of the
    current span. None when tracing is off."""
    if _installed is None:
        return None
    from opentelemetry import context, propagate, trace

    parent = propagate.extract(dict(carrier)) if carrier is not None else None
    started = _installed.tracer.start_span(
        name,
        context=parent,
        kind=trace.SpanKind[kind.upper()],
        attributes=dict(attributes or {}),
    )
    token = context.attach(trace.set_span_in_context(started, parent))
    return Scope(started, token)
