"""Package metrics counts checkUserAccess answers and refusals and exports them to Prometheus.

Counts are plain ints bumped on the XRPC event loop (one thread) and read by a
collector at scrape time, as the gRPC decision counts are (STYLE.md): answers by
permission and answer, refusals by reason and HTTP status, DID fetches by
method and result. Latency is a histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)


class XrpcMetrics:
    """The checkUserAccess metrics of one server, registered on ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        sizes: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.answers: dict[tuple[str, str], int] = {}
        self.refusals: dict[tuple[str, int], int] = {}
        self.fetches: dict[tuple[str, str], int] = {}
        self.latency = Histogram(
            "policyd_xrpc_request_duration_seconds",
            "Time to answer checkUserAccess, verification and decision included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        registry.register(_XrpcCollector(self, sizes))

    def answered(self, permission: str, answer: str) -> None:
        """Count an answer (``authorized`` or ``denied``)."""
        key = (permission, answer)
        self.answers[key] = self.answers.get(key, 0) + 1

    def refused(self, reason: str, status: int) -> None:
        """Count a request that got no answer, by reason and HTTP status."""
        key = (reason, status)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    def fetched(self, method: str, result: str) -> None:
        """Count a DID document fetch by DID method and result (``ok`` or a failure reason)."""
        key = (method, result)
        self.fetches[key] = self.fetches.get(key, 0) + 1


class _XrpcCollector(Collector):
    def __init__(self, metrics: XrpcMetrics, sizes: Callable[[], tuple[int, int]] | None) -> None:
        self._metrics = metrics
        self._sizes = sizes

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        answers = CounterMetricFamily(
            "policyd_xrpc_answers",
            "checkUserAccess answers, by permission and answer (authorized, denied).",
            labels=["permission", "answer"],
        )
        for (permission, answer), count in list(self._metrics.answers.items()):
            answers.add_metric([permission, answer], count)
        yield answers
        refusals = CounterMetricFamily(
            "policyd_xrpc_refusals",
            "checkUserAccess requests refused without an answer, by reason and HTTP status.",
            labels=["reason", "status"],
        )
        for (reason, status), count in list(self._metrics.refusals.items()):
            refusals.add_metric([reason, str(status)], count)
        yield refusals
        fetches = CounterMetricFamily(
            "policyd_did_fetches",
            "DID documents fetched, by DID method and result (ok or why not).",
            labels=["method", "result"],
        )
        for (method, result), count in list(self._metrics.fetches.items()):
            fetches.add_metric([method, result], count)
        yield fetches
        if self._sizes is not None:
            documents, tokens = self._sizes()
            yield GaugeMetricFamily(
                "policyd_did_cache_entries", "DID documents (and unknown DIDs) cached.", documents
            )
            yield GaugeMetricFamily(
                "policyd_xrpc_replay_entries", "Service-auth tokens kept until they expire.", tokens
            )
