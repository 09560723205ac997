"""The gateway's Prometheus metrics, in a registry of their own (one per application), served
at ``/metrics`` together with the default registry (the library's metrics,
:mod:`shared.telemetry.metrics`, and the process's own).

Names follow Prometheus' conventions (``luna_streams_`` prefix, seconds, ``_total``
counters); the labels are a route's pattern (``GET:/1/streams/{stream_id}``, never a
path with an id in it), a status code, a LUNA error code, an outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from shared.telemetry.metrics import LATENCY_BUCKETS

#: claims that handed out streams, and claims that found none
CLAIM_OUTCOMES = ("streams", "empty")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "luna_streams_http_requests",
            "HTTP requests answered, by route and status code",
            ["path", "status_code"],
            registry=registry,
        )
        self.duration = Histogram(
            "luna_streams_http_request_duration_seconds",
            "HTTP request duration by route",
            ["path"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.errors = Counter(
            "luna_streams_http_errors",
            "LUNA errors answered, by route and error code",
            ["path", "error_code"],
            registry=registry,
        )
        self.claims = Counter(
            "luna_streams_claims",
            "Claims (POST /{1,2}/streams/processing/queue): streams handed out, or none",
            ["outcome"],
            registry=registry,
        )
        self.claimed = Counter(
            "luna_streams_claimed_streams", "Streams handed out to agents", registry=registry
        )
        self.claim_duration = Histogram(
            "luna_streams_claim_duration_seconds",
            "Time a claim took, from its parsed request to its answer",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        for outcome in CLAIM_OUTCOMES:
            self.claims.labels(outcome=outcome)
        self.feedback_consumers = Gauge(
            "luna_streams_feedback_queue_consumers",
            "Queue workers consuming the feedback queue (as last sampled)",
            registry=registry,
        )
        self.dead_letters = Gauge(
            "luna_streams_feedback_dead_letter_messages",
            "Feedback messages in the dead-letter queue (as last sampled)",
            registry=registry,
        )
        self.tokens = Gauge(
            "luna_streams_token_queue_messages",
            "Queue tokens waiting in the all-streams queue (as last sampled)",
            registry=registry,
        )

    def watch_feedback(self, backlog: Callable[[], float], wait: Callable[[], float]) -> None:
        Gauge(
            "luna_streams_feedback_backlog_messages",
            "Feedback batches waiting for a queue worker (as last sampled)",
            registry=self.registry,
        ).set_function(backlog)
        Gauge(
            "luna_streams_feedback_estimated_wait_seconds",
            "How long a new feedback batch would wait for its answer (estimate)",
            registry=self.registry,
        ).set_function(wait)

    def watch_events(self, subscribers: Callable[[], float]) -> None:
        Gauge(
            "luna_streams_event_subscribers",
            "Clients connected to the stream events (GET /{1,2}/streams/events)",
            registry=self.registry,
        ).set_function(subscribers)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(path=route, status_code=str(status)).inc()
        self.duration.labels(path=route).observe(seconds)

    def observe_claim(self, streams: int, seconds: float) -> None:
        self.claims.labels(outcome="streams" if streams else "empty").inc()
        self.claimed.inc(streams)
        self.claim_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(REGISTRY)
