"""Ingest fixtures: a real SQLite store holding the example atproto policy, and a runner.

``run_ingester`` runs an ``Ingester`` in the test's thread until the store's
position for the source reaches a given value (polled, bounded), then stops it
the way SIGTERM does and returns once the last batch is committed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd import Engine
from policyd.filters import RelationshipFilter
from policyd.ingest.applier import Applier
from policyd.ingest.mappings import Mapping, load_mapping
from policyd.ingest.metrics import IngestMetrics
from policyd.ingest.source import Ingester, StreamSettings, source_name
from policyd.store.base import Store
from policyd.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
POLICY = (ROOT / "policies" / "atproto.policy").read_text()
WAIT_SECONDS = 30.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite file store holding policies/atproto.policy."""
    opened = SqliteStore(tmp_path / "ingest.db", synchronous="NORMAL")
    Engine(opened).write_policy(POLICY)
    yield opened
    opened.close()


def relationships(store: Store) -> set[str]:
    """Every live relationship, as text."""
    page = store.snapshot().read(RelationshipFilter(), limit=100_000)
    return {str(r) for r in page.relationships}


class Run:
    """One ingester run's parts, for assertions afterwards."""

    def __init__(self, ingester: Ingester, metrics: IngestMetrics, registry: CollectorRegistry):
        self.ingester = ingester
        self.metrics = metrics
        self.registry = registry

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


RunIngester = Callable[..., Run]


@pytest.fixture
def run_ingester(store: Store) -> RunIngester:
    def run(
        url: str,
        until: Callable[[Store], bool],
        *,
        jetstream: bool = False,
        mapping: Mapping | None = None,
        backfill: tuple[str, ...] = (),
        backfill_from: str | None = None,
        batch_size: int = 3,
    ) -> Run:
        registry = CollectorRegistry()
        metrics = IngestMetrics(registry)
        applier = Applier(store, mapping or load_mapping(), source_name(url), metrics)
        settings = StreamSettings(
            url,
            jetstream=jetstream,
            batch_size=batch_size,
            batch_seconds=0.02,
            backoff_initial=0.01,
            backfill=backfill,
            backfill_from=backfill_from,
        )
        ingester = Ingester(applier, settings, metrics)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                loop.run_until_complete(ingester.run(stop))
            except BaseException as e:
                failure.append(e)

        thread = threading.Thread(target=target)
        thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while thread.is_alive() and not until(store) and time.monotonic() < deadline:
            thread.join(0.01)
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT_SECONDS)
        loop.close()
        if failure:
            raise failure[0]
        assert until(store), "the ingester did not reach the expected state in time"
        return Run(ingester, metrics, registry)

    return run


def at_position(source_url: str, position: int) -> Callable[[Store], bool]:
    """A condition: the store's position for the stream has reached ``position``."""
    name = source_name(source_url)

    def reached(store: Store) -> bool:
        stored = store.ingest_position(name)
        return stored is not None and stored >= position

    return reached
