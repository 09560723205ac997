"""Traces (shared/telemetry/tracing.py): one trace from the gateway's request through RabbitMQ
to the queue worker's application of the feedback and its database writes; through dramatiq
messages from a job's sending to its run; and nothing at all when traces are off.

The gateway and the workers run in this process, against the real RabbitMQ and MongoDB,
with the SDK's in-memory exporter. The trace still crosses the broker for real: the
worker's consumer callback runs in aio-pika's task, not the request's, so a span of it
can only be in the request's trace through the message's ``traceparent`` header.

OpenTelemetry's pymongo listener cannot be removed and keeps the provider of the first
install (shared/telemetry/tracing.py), so this module installs one provider for the whole process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aio_pika
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import monitoring

from gateway.app import create_app
from gateway.middlewares import trace_middleware
from log_janitor.jobs import spec as janitor_spec
from queue_worker.worker import FeedbackWorker
from shared.core.settings import Settings
from shared.domain.request_id import HEADER
from shared.runtime.job_worker import JobTracing, JobWorker
from shared.telemetry import tracing
from tests.integration.factories import Client, claim_ids, create_stream, v1_body
from tests.otlp_receiver import receiving

Json = dict[str, Any]

PROVIDER = TracerProvider()
EXPORTER = InMemorySpanExporter()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))

VIDEO_INFO: Json = {
    "width": 1280,
    "height": 720,
    "frame_rate": 25,
    "bit_rate": 2000000,
    "gop_size": 50,
    "start_time": "2024-03-01T10:00:00Z",
    "duration": 1.0,
    "progress": 0.5,
}


@pytest.fixture(scope="module", autouse=True)
def _pymongo_listeners_as_found() -> Iterator[None]:
    """pymongo cannot unregister a listener, so the one the first install registers would
    stay for the rest of the session; and every client made while a command listener is
    registered draws an operation id from ``random`` for each command, which Hypothesis
    reports in later tests (schemathesis' gateway, in its own thread) as a strategy using
    ``random``. The module leaves pymongo's command listeners as it found them."""
    before = list(monitoring._LISTENERS.command_listeners)
    yield
    monitoring._LISTENERS.command_listeners[:] = before


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Traces on, into :data:`EXPORTER`, for this test; off again after it."""
    EXPORTER.clear()
    tracing.install(PROVIDER)
    try:
        yield EXPORTER
    finally:
        tracing.uninstall()
        EXPORTER.clear()


@pytest.fixture
async def traced_client(spans: InMemorySpanExporter, settings: Settings) -> AsyncIterator[Client]:
    """The gateway, made after traces were turned on (its app and its clients instrumented)."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def traced_worker(
    spans: InMemorySpanExporter, settings: Settings
) -> AsyncIterator[FeedbackWorker]:
    worker = FeedbackWorker(settings)
    await worker.start()
    yield worker
    await worker.stop(timeout=5)


def hex_id(value: int) -> str:
    return f"{value:016x}"


def tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree (for a failing assertion's message)."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans}
    for s in spans:
        parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            lines.append(f"{'  ' * depth}{s.name} [{s.kind.name}] {hex_id(s.context.span_id)}")
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def one(spans: list[ReadableSpan], kind: SpanKind, name_part: str) -> ReadableSpan:
    found = [s for s in spans if s.kind == kind and name_part in s.name]
    assert len(found) == 1, (kind, name_part, tree(spans))
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def wait_for_spans(
    exporter: InMemorySpanExporter, trace_id: int, done: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    """The finished spans of one trace, once ``done(spans)`` holds (the worker's last spans
    may end after the gateway has answered)."""
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if done(spans) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


async def test_one_trace_from_the_request_to_the_workers_writes(
    traced_client: Client, traced_worker: FeedbackWorker, settings: Settings
) -> None:
    stream_id = await create_stream(traced_client, v1_body(name="traced"))
    assert await claim_ids(traced_client, {}, 1) == [stream_id]
    report = {"stream_id": stream_id, "status": "in_progress", "version": 1}
    resp = await traced_client.post(
        "/1/streams/processing/feedback",
        json={"streams": [{**report, "video_info": VIDEO_INFO}]},
    )
    assert resp.status == 200, await resp.text()
    request_id = resp.headers[HEADER]

    (server,) = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.kind == SpanKind.SERVER and (s.attributes or {}).get(tracing.REQUEST_ID) == request_id
    ]
    assert server.name == "POST /1/streams/processing/feedback"

    def complete(spans: list[ReadableSpan]) -> bool:
        # the gateway's receipt of the answer is the last span of the round trip
        return any(s.kind == SpanKind.CONSUMER and ".reply." in s.name for s in spans)

    spans = await wait_for_spans(EXPORTER, server.context.trace_id, complete)
    shown = tree(spans)
    feedback_queue = f"{settings.queue_prefix}.feedback"

    # the gateway publishes the batch within its request's span
    publish = one(spans, SpanKind.PRODUCER, feedback_queue)
    assert parent_of(publish) == server.context.span_id, shown
    # the worker's delivery continues it: from the message's traceparent header, the
    # request id from its baggage
    delivery = one(spans, SpanKind.CONSUMER, feedback_queue)
    assert parent_of(delivery) == publish.context.span_id, shown
    assert (delivery.attributes or {}).get(tracing.REQUEST_ID) == request_id
    # its application, and the database commands of it
    apply = one(spans, SpanKind.INTERNAL, "apply feedback")
    assert parent_of(apply) == delivery.context.span_id, shown
    assert (apply.attributes or {}).get("luna.feedback.items") == 1
    commands = [s for s in spans if parent_of(s) == apply.context.span_id]
    assert commands and all(s.kind == SpanKind.CLIENT for s in commands), shown
    assert {(s.attributes or {}).get("db.system") for s in commands} == {"mongodb"}, shown
    names = {s.name.split(".", 1)[1] for s in commands}
    assert "find" in names, shown  # the streams read
    assert names & {"insert", "update"}, shown  # the report and its log row written
    # the answer goes back in the same trace, and the gateway receives it there
    answer = [s for s in spans if s.kind == SpanKind.PRODUCER and ".reply." in s.name]
    assert [parent_of(s) for s in answer] == [delivery.context.span_id], shown
    receipt = one(spans, SpanKind.CONSUMER, ".reply.")
    assert parent_of(receipt) == answer[0].context.span_id, shown

    # no span of the round trip started a trace of its own
    assert {s.context.trace_id for s in [server, publish, delivery, apply, *commands]} == {
        server.context.trace_id
    }


async def test_a_jobs_run_continues_the_trace_of_its_sending(
    spans: InMemorySpanExporter, settings: Settings
) -> None:
    """The log janitor, in this process: its periodic job is sent at once (the lease is
    free), through RabbitMQ, and run by its dramatiq worker."""
    worker = JobWorker(janitor_spec(settings), settings)
    assert any(isinstance(m, JobTracing) for m in worker.broker.middleware)
    try:
        await worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = [s for s in spans.get_finished_spans() if s.name == "clear_logs process"]
            if runs:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the janitor's job did not run")
    finally:
        await worker.stop_taking_work()
        await worker.finish(5)
        await worker.close()
    (run,) = runs
    finished = [s for s in spans.get_finished_spans() if s.context.trace_id == run.context.trace_id]
    shown = tree(finished)
    assert run.kind == SpanKind.CONSUMER
    send = one(finished, SpanKind.PRODUCER, f"{settings.queue_prefix}.jobs.janitor")
    assert parent_of(run) == send.context.span_id, shown
    # the job's database commands are the run's children
    commands = [s for s in finished if parent_of(s) == run.context.span_id]
    assert commands and {s.kind for s in commands} == {SpanKind.CLIENT}, shown


def _otel_free_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def test_off_imports_nothing_of_opentelemetry() -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT, a process's start imports no OpenTelemetry
    module: nothing of it can run on a request or a message."""
    code = (
        "import sys\n"
        "import gateway.app, gateway.__main__, queue_worker.worker, shared.runtime.job_worker\n"
        "import shared.runtime.lifecycle\n"
        "from shared.telemetry import tracing\n"
        "for name in ('gateway', 'queue-worker', 'autorestart-worker', 'log-janitor'):\n"
        "    assert tracing.setup(name) is False\n"
        "assert not tracing.enabled()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    _run(code)


def _run(code: str, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**_otel_free_environment(), **env},
        timeout=60,
    )


SPAN_IN_A_PROCESS = """
from opentelemetry import trace
from shared.telemetry import tracing
assert tracing.setup("queue-worker") and tracing.enabled()
with trace.get_tracer("test").start_as_current_span("probe"):
    pass
"""  # the span goes when the process exits (the SDK flushes then)


def test_on_exports_over_otlp_http_under_the_process_name() -> None:
    with receiving() as (receiver, endpoint):
        _run(SPAN_IN_A_PROCESS, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        _run(SPAN_IN_A_PROCESS, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="mine")
    assert receiver.spans == {"luna-streams-queue-worker": 1, "mine": 1}
    assert receiver.refused == 0


def test_an_endpoint_without_the_packages_leaves_traces_off() -> None:
    code = (
        "import logging, sys\n"
        "logging.basicConfig()\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from shared.telemetry import tracing\n"
        "assert tracing.setup('gateway') is False and not tracing.enabled()\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**_otel_free_environment(), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        timeout=60,
    )
    assert "pip install 'luna-streams[tracing]'" in found.stderr


def _original_application() -> bool:
    return web.Application.__module__ == "aiohttp.web_app"


async def test_off_installs_no_hook(settings: Settings) -> None:
    """Traces off (never turned on in this test, or turned off after another): no tracer
    provider, no instrumentation, no middleware, no header on the messages."""
    assert tracing.setup("gateway", _otel_free_environment()) is False
    assert not tracing.enabled()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert _original_application()
    assert not hasattr(aio_pika.Exchange.publish, "__wrapped__")
    assert not hasattr(aio_pika.Queue.consume, "__wrapped__")
    # pymongo's listener, if a test registered it, is turned off
    assert not [
        listener
        for listener in monitoring._LISTENERS.command_listeners
        if getattr(listener, "is_enabled", False)
    ]
    app = create_app(settings)
    assert trace_middleware not in app.middlewares
    assert not any(
        isinstance(m, JobTracing)
        for m in JobWorker(janitor_spec(settings), settings).broker.middleware
    )

    # a feedback batch goes without trace headers (a worker of this test looks at it)
    seen: list[Json] = []
    worker = FeedbackWorker(settings)
    passed = worker.on_message

    async def look(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(dict(message.headers or {}))
        await passed(message)

    worker.on_message = look  # type: ignore[method-assign]
    await worker.start()
    try:
        async with TestClient(TestServer(app)) as client:
            stream_id = await create_stream(client, v1_body(name="untraced"))
            assert await claim_ids(client, {}, 1) == [stream_id]
            report = {"stream_id": stream_id, "status": "in_progress", "version": 1}
            resp = await client.post("/1/streams/processing/feedback", json={"streams": [report]})
            assert resp.status == 200, await resp.text()
    finally:
        await worker.stop(timeout=5)
    assert len(seen) == 1
    assert not {"traceparent", "tracestate", "baggage"} & set(seen[0]), seen
