"""Package metrics defines policyd's Prometheus metrics on an injected CollectorRegistry.

Per-method request counts, errors by code and latency come from the
interceptor; decisions by result are plain ints the servicers bump and a
collector exports; the current revision is read at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from policyd.engine import Permissionship

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The metrics of one server, registered on ``registry``."""

    def __init__(
        self, registry: CollectorRegistry, revision: Callable[[], int] | None = None
    ) -> None:
        self.registry = registry
        self.requests = Counter(
            "policyd_grpc_requests",
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.errors = Counter(
            "policyd_grpc_errors",
            "gRPC requests that failed, by method, status code and policyd error code.",
            ["method", "code", "error"],
            registry=registry,
        )
        self.latency = Histogram(
            "policyd_grpc_request_duration_seconds",
            "Time to handle a gRPC request (streams: until the last response), by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Plain ints on the hot path; exported by _DecisionCollector at scrape time.
        self.decisions: dict[Permissionship, int] = dict.fromkeys(Permissionship, 0)
        self._lock = threading.Lock()
        registry.register(_DecisionCollector(self, revision))

    def count_decisions(self, results: Iterator[Permissionship] | list[Permissionship]) -> None:
        """Add decisions to the per-result counts."""
        with self._lock:
            for result in results:
                self.decisions[result] += 1

    def observe(self, method: str, code: str, error: str, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(method, code).inc()
        if code != "OK":
            self.errors.labels(method, code, error).inc()
        self.latency.labels(method).observe(seconds)


class _DecisionCollector(Collector):
    def __init__(self, metrics: Metrics, revision: Callable[[], int] | None) -> None:
        self._metrics = metrics
        self._revision = revision

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        decisions = CounterMetricFamily(
            "policyd_decisions", "Check and BatchCheck decisions, by result.", labels=["result"]
        )
        for result, count in self._metrics.decisions.items():
            decisions.add_metric([result.value], count)
        yield decisions
        if self._revision is not None:
            yield GaugeMetricFamily(
                "policyd_revision", "The store's newest committed revision.", self._revision()
            )


def serve_metrics(registry: CollectorRegistry, address: str) -> tuple[WSGIServer, int]:
    """Serve ``/metrics`` over HTTP on ``host:port`` in a daemon thread; returns server and port."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server, server.server_port
