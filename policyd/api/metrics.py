"""Package metrics defines policyd's Prometheus metrics on an injected CollectorRegistry.

Per-method request counts, errors by code and latency come from the
interceptor; decisions by result are plain ints the servicers bump and a
collector exports; the current revision is read at scrape time.

With ``policyd serve --workers N`` one endpoint reports every worker, through
prometheus-client's multiprocess mode: the supervisor makes a temporary
directory (``SharedMetrics``), each worker finds it in
``PROMETHEUS_MULTIPROC_DIR`` and writes its counters, histograms and gauges
into per-process files there, and the supervisor serves their merge. Counters
and histograms are summed over workers, those of exited workers included, so
a worker restart never makes a counter go down. A worker's scrape-time
collectors (decisions, the decision cache, the index, the XRPC counts) have
no one to call them in a worker that serves no endpoint, so
``MetricsPublisher`` copies what they report into the files once a
``PUBLISH_SECONDS``: their counters are summed like the others, and each
gauge is combined as ``GAUGE_MODES`` says (the in-flight gauge is summed
too): ``policyd_revision`` is the newest of the live workers,
``policyd_decision_cache_entries`` the sum over them, and every other gauge
(hit ratio since start, index size, index revision, revision lag, the XRPC
caches) stays per worker with a ``pid`` label, since a sum of those would
mean nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from policyd.decisions import Permissionship
from policyd.engine import EngineStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client's multiprocess mode keeps its files (read when it is imported)."""

PUBLISH_SECONDS = 1.0
"""How often a worker copies its scrape-time metrics into the shared files."""

GaugeMode = Literal["livemax", "livesum", "liveall"]

GAUGE_MODES: dict[str, GaugeMode] = {
    "policyd_revision": "livemax",
    "policyd_decision_cache_entries": "livesum",
}
"""How the shared endpoint combines the workers' scrape-time gauges; others: one per worker."""


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
            "gRPC requests that failed, by method, status code and policyd error code "
            "(calls the caller cancelled are not failures: see requests_total{code=CANCELLED})",
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
            multiprocess_mode="livesum",
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
        if code not in ("OK", "CANCELLED"):  # a caller that hung up is no fault of ours
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


def multiprocess_dir() -> str | None:
    """The shared metrics directory this worker writes to, if a supervisor made one."""
    return os.environ.get(MULTIPROCESS_DIR) or None


class WorkerRegistry(CollectorRegistry):
    """A registry that remembers its scrape-time collectors, so a worker can publish them."""

    def __init__(self) -> None:
        super().__init__()
        self.scrape_time: list[Collector] = []

    def register(self, collector: Collector) -> None:
        """Register ``collector``; one that is not a Counter, Gauge or Histogram is remembered."""
        super().register(collector)
        if not isinstance(collector, MetricWrapperBase):
            self.scrape_time.append(collector)


class MetricsPublisher:
    """Copies a worker's scrape-time metrics into the multiprocess files, in a daemon thread.

    Counters are copied as increments since the last copy, gauges as their
    value (combined across workers as ``GAUGE_MODES`` says).
    """

    def __init__(self, registry: WorkerRegistry, interval: float = PUBLISH_SECONDS) -> None:
        self._registry = registry
        self._interval = interval
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._published: dict[tuple[str, tuple[str, ...]], float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policyd-metrics", daemon=True)

    def start(self) -> None:
        """Publish now and then every ``interval`` seconds until ``stop``."""
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and publish one last time, so a stopping worker's counts are kept."""
        self._stopping.set()
        self._thread.join()
        self.publish()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.publish()

    def publish(self) -> None:
        """Copy what every scrape-time collector reports now."""
        for collector in self._registry.scrape_time:
            for family in collector.collect():
                for sample in family.samples:
                    if family.type == "counter" and sample.name == f"{family.name}_total":
                        self._copy_counter(family, sample)
                    elif family.type == "gauge":
                        self._copy_gauge(family, sample)

    def _copy_counter(self, family: Metric, sample: Sample) -> None:
        counter = self._counters.get(family.name)
        if counter is None:
            counter = Counter(family.name, family.documentation, list(sample.labels), registry=None)
            self._counters[family.name] = counter
        labels = tuple(sample.labels.values())
        key = (family.name, labels)
        increment = sample.value - self._published.get(key, 0.0)
        self._published[key] = sample.value
        if increment > 0:
            (counter.labels(*labels) if labels else counter).inc(increment)

    def _copy_gauge(self, family: Metric, sample: Sample) -> None:
        gauge = self._gauges.get(family.name)
        if gauge is None:
            mode = GAUGE_MODES.get(family.name, "liveall")
            gauge = Gauge(
                family.name,
                family.documentation,
                list(sample.labels),
                registry=None,
                multiprocess_mode=mode,
            )
            self._gauges[family.name] = gauge
        labels = tuple(sample.labels.values())
        (gauge.labels(*labels) if labels else gauge).set(sample.value)


class SharedMetrics:
    """The supervisor's side of multiprocess mode: the directory and the registry merging it."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="policyd-metrics-")
        self.registry = CollectorRegistry()
        # prometheus-client leaves its multiprocess module untyped.
        multiprocess.MultiProcessCollector(self.registry, path=self.path)  # type: ignore[no-untyped-call]

    def environment(self) -> dict[str, str]:
        """What a worker's environment needs to write here."""
        return {MULTIPROCESS_DIR: self.path}

    def worker_exited(self, pid: int) -> None:
        """Drop the gauges of a worker that exited; its counters stay in the sums."""
        multiprocess.mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Remove the directory."""
        shutil.rmtree(self.path, ignore_errors=True)
