"""Package ingest.command is ``policyd ingest``: its options, and running one ingester to the end.

The CLI (the composition root) opens the store and serves metrics; this
module loads and validates the mapping, builds the applier and the stream,
and runs them until SIGTERM or SIGINT, when the batch in hand is committed
before exit.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this on every run: keep websockets and libipld out
    from prometheus_client import CollectorRegistry

    from policyd.ingest.source import Ingester
    from policyd.store.base import Store


@dataclass(frozen=True)
class IngestOptions:
    """What ``policyd ingest`` was asked to do (the CLI parses it; policyd/cli/ingest.py)."""

    url: str
    """The stream: a firehose, or with ``jetstream`` a Jetstream endpoint."""
    jetstream: bool = False
    mapping: str | None = None
    """The record → relationship mapping YAML (None: the Bluesky graph)."""
    check: bool = False
    """Validate the mapping against the store's policy and exit."""
    backfill: tuple[str, ...] = ()
    """DIDs whose repos are loaded from com.atproto.sync.getRepo first."""
    backfill_from: str | None = None
    name: str | None = None
    """The name the stream position is stored under (None: the URL without query)."""
    batch_size: int = 5000
    batch_seconds: float = 0.25
    metrics_listen: str = "127.0.0.1:9091"
    """Prometheus /metrics address; "off" disables it."""


def run(
    args: IngestOptions,
    store: Store,
    serve_metrics: Callable[[CollectorRegistry, str], object] | None = None,
) -> int:
    """Run ``policyd ingest`` as ``args`` say on an open store; returns the exit status."""
    from prometheus_client import CollectorRegistry

    from policyd.ingest.applier import Applier
    from policyd.ingest.mappings import load_mapping
    from policyd.ingest.metrics import IngestMetrics
    from policyd.ingest.source import Ingester, StreamSettings, source_name

    mapping = load_mapping(args.mapping)
    name = args.name or source_name(args.url)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    applier = Applier(store, mapping, name, metrics)  # validates the mapping
    if args.check:
        print(f"{mapping.source}: ok: {', '.join(sorted(mapping.collections))}")
        return 0
    settings = StreamSettings(
        args.url,
        jetstream=args.jetstream,
        batch_size=args.batch_size,
        batch_seconds=args.batch_seconds,
        backfill=args.backfill,
        backfill_from=args.backfill_from,
    )
    if serve_metrics is not None and args.metrics_listen != "off":
        serve_metrics(registry, args.metrics_listen)
    position = applier.position
    print(
        f"policyd ingest: {name} from position {position if position is not None else 'live'}, "
        f"collections {', '.join(sorted(mapping.collections))}",
        flush=True,
    )
    ingester = Ingester(applier, settings, metrics)
    asyncio.run(_until_signalled(ingester))
    print(f"policyd ingest: stopped at position {applier.position}", flush=True)
    return 0


async def _until_signalled(ingester: Ingester) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await ingester.run(stop)
