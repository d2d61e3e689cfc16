"""Package metrics defines policyd's Prometheus metrics on an injected CollectorRegistry.

Per-method request counts, errors by code and latency come from the
interceptor; decisions by result are plain ints the servicers bump and a
collector exports; the current revision is read at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from policyd.decisions import Permissionship
from policyd.engine import EngineStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """The metrics of one server, registered on ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        revision: Callable[[], int] | None = None,
        engine_stats: Callable[[], EngineStats] | None = None,
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
        self.in_flight = Gauge(
            "policyd_grpc_in_flight",
            "gRPC calls admitted and not yet finished (streams while open), by method.",
            ["method"],
            registry=registry,
        )
        # Plain ints on the hot path; exported by _DecisionCollector at scrape time.
        self.decisions: dict[Permissionship, int] = dict.fromkeys(Permissionship, 0)
        self._lock = threading.Lock()
        registry.register(_DecisionCollector(self, revision, engine_stats))

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
    def __init__(
        self,
        metrics: Metrics,
        revision: Callable[[], int] | None,
        engine_stats: Callable[[], EngineStats] | None,
    ) -> None:
        self._metrics = metrics
        self._revision = revision
        self._engine_stats = engine_stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        decisions = CounterMetricFamily(
            "policyd_decisions", "Check and BatchCheck decisions, by result.", labels=["result"]
        )
        for result, count in self._metrics.decisions.items():
            decisions.add_metric([result.value], count)
        yield decisions
        head = self._revision() if self._revision is not None else None
        if head is not None:
            yield GaugeMetricFamily(
                "policyd_revision", "The store's newest committed revision.", head
            )
        if self._engine_stats is None:
            return
        stats = self._engine_stats()
        yield CounterMetricFamily(
            "policyd_decision_cache_hits", "Decisions served from the cache.", stats.cache_hits
        )
        yield CounterMetricFamily(
            "policyd_decision_cache_misses", "Decisions computed.", stats.cache_misses
        )
        lookups = stats.cache_hits + stats.cache_misses
        yield GaugeMetricFamily(
            "policyd_decision_cache_hit_ratio",
            "Cache hits over lookups since start.",
            stats.cache_hits / lookups if lookups else 0.0,
        )
        yield GaugeMetricFamily(
            "policyd_decision_cache_entries", "Decisions in the cache.", stats.cache_entries
        )
        if stats.index_revision is not None and stats.index_relationships is not None:
            yield GaugeMetricFamily(
                "policyd_index_relationships",
                "Relationships in this process's in-memory index.",
                stats.index_relationships,
            )
            yield GaugeMetricFamily(
                "policyd_index_revision",
                "The revision the index has applied.",
                stats.index_revision,
            )
            yield GaugeMetricFamily(
                "policyd_index_lag_seconds",
                "Seconds since the index last reached the store's head (its follower's lag).",
                stats.index_lag_seconds,
            )
            if head is not None:
                yield GaugeMetricFamily(
                    "policyd_revision_lag",
                    "Revisions committed to the store that the index has not applied yet.",
                    max(0, head - stats.index_revision),
                )


def serve_metrics(registry: CollectorRegistry, address: str) -> tuple[WSGIServer, int]:
    """Serve ``/metrics`` over HTTP on ``host:port`` in a daemon thread; returns server and port."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server, server.server_port
