"""Package ingest.command is ``policyd ingest``: its options, and running one ingester to the end.

The CLI (the composition root) opens the store and serves metrics; this
module loads and validates the mapping, builds the applier and the stream,
and runs them until SIGTERM or SIGINT, when the batch in hand is committed
before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI builds its parser on every run: keep websockets and libipld out
    from prometheus_client import CollectorRegistry

    from policyd.ingest.source import Ingester
    from policyd.store.base import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``policyd ingest``."""
    parser.add_argument(
        "url",
        metavar="URL",
        help="the stream: a firehose (ws[s]://host, or the full subscribeRepos URL) "
        "or, with --jetstream, a Jetstream endpoint",
    )
    parser.add_argument(
        "--jetstream", action="store_true", help="URL is Jetstream (JSON), not a firehose"
    )
    parser.add_argument(
        "--db", default="sqlite://policyd.db", help="store URL (default: sqlite://policyd.db)"
    )
    parser.add_argument(
        "--mapping",
        metavar="FILE",
        help="record → relationship mapping YAML (default: the Bluesky follow/block/list graph)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the mapping against the store's policy and exit",
    )
    parser.add_argument(
        "--backfill",
        metavar="DID",
        action="append",
        default=[],
        help="load this repo's records from com.atproto.sync.getRepo first (repeatable)",
    )
    parser.add_argument(
        "--backfill-from",
        metavar="URL",
        help="PDS or relay to ask getRepo (default: the firehose's host over http[s])",
    )
    parser.add_argument(
        "--name",
        help="the name the stream position is stored under (default: the URL without query)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="most events per transaction (default 5000)"
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=0.25,
        help="longest wait to fill a batch (default 0.25)",
    )
    parser.add_argument(
        "--metrics-listen",
        default="127.0.0.1:9091",
        metavar="HOST:PORT|off",
        help="Prometheus /metrics address (default: 127.0.0.1:9091); 'off' disables it",
    )


def run(
    args: argparse.Namespace,
    store: Store,
    serve_metrics: Callable[[CollectorRegistry, str], object] | None = None,
) -> int:
    """Run ``policyd ingest`` with parsed ``args`` on an open store; returns the exit status."""
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
        backfill=tuple(args.backfill),
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
