"""Gateway Prometheus metrics, in a registry of their own (one per application)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "request_count",
            "HTTP requests by route and status code",
            ["path", "status_code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "request_duration_seconds",
            "HTTP request duration by route",
            ["path"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "request_errors",
            "LUNA errors answered, by error code",
            ["path", "error_code"],
            registry=self.registry,
        )

    def watch_feedback(self, backlog: Callable[[], float], wait: Callable[[], float]) -> None:
        Gauge(
            "feedback_backlog",
            "Feedback batches waiting for a queue worker (as last sampled)",
            registry=self.registry,
        ).set_function(backlog)
        Gauge(
            "feedback_estimated_wait_seconds",
            "How long a new feedback batch would wait for its answer (estimate)",
            registry=self.registry,
        ).set_function(wait)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(path=route, status_code=str(status)).inc()
        self.duration.labels(path=route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
