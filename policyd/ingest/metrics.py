"""Package ingest.metrics exports what ``policyd ingest`` does to Prometheus.

Counts are plain ints bumped by the applier (one thread at a time) and read by
a collector at scrape time, as the gRPC decision counts are (STYLE.md):
events by kind, record changes by result, malformed frames, reconnects. Rates
are ``rate()`` over these counters. Lag is the time from the last applied
event's own timestamp to its commit in the store; the batch commit time is a
histogram.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from policyd.ingest.frames import Event, event_lag
from policyd.store.records import AppliedRecords

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class IngestMetrics:
    """The metrics of one ingester, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events: dict[str, int] = {}
        self.records: dict[str, int] = {"applied": 0, "stale": 0, "invalid": 0}
        self.malformed = 0
        self.reconnects = 0
        self.lag_seconds: float | None = None
        self.position: int | None = None
        self.batch_seconds = Histogram(
            "policyd_ingest_batch_duration_seconds",
            "Time to commit one batch of events to the store.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        registry.register(_IngestCollector(self))

    def batch(
        self,
        events: Sequence[Event],
        applied: AppliedRecords,
        invalid: int,
        seconds: float,
        position: int | None,
    ) -> None:
        """Count one committed batch."""
        for event in events:
            kind = type(event).__name__.removesuffix("Event").lower()
            self.events[kind] = self.events.get(kind, 0) + 1
        self.records["applied"] += applied.applied
        self.records["stale"] += applied.stale
        self.records["invalid"] += invalid
        self.batch_seconds.observe(seconds)
        if position is not None:
            self.position = position
        for event in reversed(events):
            lag = event_lag(event, time.time())
            if lag is not None:
                self.lag_seconds = lag
                break


class _IngestCollector(Collector):
    def __init__(self, metrics: IngestMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        m = self._metrics
        events = CounterMetricFamily(
            "policyd_ingest_events", "Events applied, by kind.", labels=["kind"]
        )
        for kind, count in sorted(m.events.items()):
            events.add_metric([kind], count)
        yield events
        records = CounterMetricFamily(
            "policyd_ingest_records",
            "Record changes of mapped collections: applied, stale (duplicate or older), "
            "invalid (mapped to a relationship the policy refuses).",
            labels=["result"],
        )
        for result, count in sorted(m.records.items()):
            records.add_metric([result], count)
        yield records
        yield CounterMetricFamily(
            "policyd_ingest_malformed_frames", "Frames that did not decode, skipped.", m.malformed
        )
        yield CounterMetricFamily(
            "policyd_ingest_reconnects", "Connections to the stream reopened.", m.reconnects
        )
        if m.lag_seconds is not None:
            yield GaugeMetricFamily(
                "policyd_ingest_lag_seconds",
                "From the last applied event's own time to its commit in the store.",
                m.lag_seconds,
            )
        if m.position is not None:
            yield GaugeMetricFamily(
                "policyd_ingest_position",
                "The stored stream position (firehose seq or Jetstream time_us).",
                m.position,
            )
