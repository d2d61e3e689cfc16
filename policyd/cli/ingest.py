"""Package ingest holds ``policyd ingest``: follow a firehose or Jetstream into the store."""

from __future__ import annotations

import logging

import click

from policyd.cli.options import DEFAULT_SQLITE_FILE, store_options


@click.command()
@click.argument("url")
@click.option("--jetstream", is_flag=True, help="URL is Jetstream (JSON), not a firehose")
@click.option(
    "--mapping",
    metavar="FILE",
    help="record → relationship mapping YAML (default: the Bluesky follow/block/list graph)",
)
@click.option(
    "--check", is_flag=True, help="validate the mapping against the store's policy and exit"
)
@click.option(
    "--backfill",
    metavar="DID",
    multiple=True,
    help="load this repo's records from com.atproto.sync.getRepo first (repeatable)",
)
@click.option(
    "--backfill-from",
    metavar="URL",
    help="PDS or relay to ask getRepo (default: the firehose's host over http[s])",
)
@click.option(
    "--name", help="the name the stream position is stored under (default: the URL, no query)"
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="most events per transaction",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=0.25,
    show_default=True,
    help="longest wait to fill a batch",
)
@click.option(
    "--metrics-listen",
    default="127.0.0.1:9091",
    show_default=True,
    metavar="HOST:PORT|off",
    help="Prometheus /metrics address; 'off' disables it",
)
@store_options(default=DEFAULT_SQLITE_FILE)
def ingest(
    url: str,
    jetstream: bool,
    mapping: str | None,
    check: bool,
    backfill: tuple[str, ...],
    backfill_from: str | None,
    name: str | None,
    batch_size: int,
    batch_seconds: float,
    metrics_listen: str,
    store: str,
) -> int:
    """Follow a firehose (subscribeRepos) or Jetstream: records become relationships.

    The mapping is checked against the store's policy at start; the stream
    position is stored with the writes it covers, so a restart resumes
    exactly. SIGTERM or SIGINT commits the batch in hand and exits.

    Example: policyd ingest wss://bsky.network --backfill did:plc:alice
    """
    from policyd.api.metrics import serve_metrics
    from policyd.ingest.command import IngestOptions, run
    from policyd.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = IngestOptions(
        url,
        jetstream=jetstream,
        mapping=mapping,
        check=check,
        backfill=backfill,
        backfill_from=backfill_from,
        name=name,
        batch_size=batch_size,
        batch_seconds=batch_seconds,
        metrics_listen=metrics_listen,
    )
    return run(options, open_store(store), serve_metrics)
