"""A local OTLP/HTTP trace receiver: what a collector is to the processes, for tests and the
tracing benchmark.

It answers ``POST /v1/traces`` (protobuf, as the OTLP/HTTP exporter sends it; gzip when
``OTEL_EXPORTER_OTLP_COMPRESSION`` asks for it) with an empty success and counts the spans,
by service name. It runs in a thread of the calling process (``http.server``), on a port
of 127.0.0.1; the parsing is the collector's share of the work, not the services'.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OtlpReceiver:
    """The counts of what was received; :func:`receiving` serves it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.refused = 0
        self.bytes = 0
        #: spans received, by ``service.name``
        self.spans: Counter[str] = Counter()
        #: the names of the spans received, by service
        self.names: dict[str, Counter[str]] = {}

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.spans.values())

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.requests += 1
            self.bytes += len(body)
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                names = self.names.setdefault(service, Counter())
                for scope_spans in resource_spans.scope_spans:
                    self.spans[service] += len(scope_spans.spans)
                    names.update(span.name for span in scope_spans.spans)


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the exporter keeps its connection

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces":
                with receiver.lock:
                    receiver.refused += 1
                self._answer(404, b"")
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.take(body)
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per export would drown the output

    return Handler


@contextlib.contextmanager
def receiving(port: int = 0) -> Iterator[tuple[OtlpReceiver, str]]:
    """A receiver on 127.0.0.1 (``port``, or any free one) and its endpoint URL, the value
    of ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
