"""Package bench.ingest measures ``policyd ingest``: events applied per second, end to end.

A loopback WebSocket server in another process (``ingest.testing.server``)
replays pre-built firehose frames as fast as the socket takes them; the
ingester in this process decodes, maps and commits them to a fresh SQLite
file (synchronous FULL, as ``policyd serve`` opens it) in batches, until the
stored position reaches the last frame. Workloads:

- ``graph``: every frame is a graph commit (follows 70 %, deletes of earlier
  follows 15 %, blocks 10 %, list items 5 %): the worst case for the store;
- ``mixed``: 20 % graph commits, 80 % posts and likes the mapping skips
  without decoding their CAR, closer to the live network's mix;
- ``apply``: the graph events already decoded, straight into the applier
  (the store's share of the cost).

Rates only, never assertions: benchmarks print numbers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from policyd.engine import Engine
from policyd.ingest.applier import Applier
from policyd.ingest.frames import Event, decode_frame
from policyd.ingest.mappings import load_mapping
from policyd.ingest.source import Ingester, StreamSettings, source_name
from policyd.ingest.testing.encode import (
    BLOCK,
    FOLLOW,
    LISTITEM,
    POST,
    Op,
    block,
    commit_frame,
    follow,
    listitem,
    post,
    tid,
)
from policyd.store.sqlite import SqliteStore

POLICY_FILE = Path(__file__).resolve().parents[2] / "policies" / "atproto.policy"
BATCH_SIZE = 5000


def frames(count: int, graph_share: float, seed: int) -> list[tuple[int, bytes]]:
    """``count`` commit frames, ``graph_share`` of them graph records, the rest posts."""
    rng = random.Random(seed)
    made: list[tuple[int, bytes]] = []
    follows: list[tuple[str, str]] = []
    for seq in range(1, count + 1):
        repo = f"did:plc:repo{rng.randrange(5000)}"
        subject = f"did:plc:subject{rng.randrange(20000)}"
        roll = rng.random()
        if roll >= graph_share:
            op = Op("create", POST, f"p{seq}", post("hello world"))
        else:
            kind = roll / graph_share
            if kind < 0.15 and follows:
                repo, rkey = follows.pop(rng.randrange(len(follows)))
                op = Op("delete", FOLLOW, rkey)
            elif kind < 0.25:
                op = Op("create", BLOCK, f"b{seq}", block(subject))
            elif kind < 0.30:
                lst = f"at://{repo}/app.bsky.graph.list/l{seq % 7}"
                op = Op("create", LISTITEM, f"i{seq}", listitem(lst, subject))
            else:
                op = Op("create", FOLLOW, f"f{seq}", follow(subject))
                follows.append((repo, f"f{seq}"))
        made.append((seq, commit_frame(seq, repo, tid(seq), [op])))
    return made


def _serve(count: int, graph_share: float, seed: int, urls: Any, done: Any) -> None:
    from policyd.ingest.testing.server import StreamScript, StreamServer

    server = StreamServer(StreamScript(frames=list(frames(count, graph_share, seed))))
    urls.put(server.url)
    done.wait()
    server.close()


def _fresh_store(tmp: Path, name: str) -> SqliteStore:
    store = SqliteStore(tmp / f"{name}.db")
    Engine(store).write_policy(POLICY_FILE.read_text())
    return store


def measure_stream(
    name: str, count: int, graph_share: float, seed: int, tmp: Path
) -> dict[str, object]:
    """One workload over the loopback server: events applied per second, end to end."""
    context = multiprocessing.get_context("spawn")
    urls = context.Queue()
    done = context.Event()
    server = context.Process(target=_serve, args=(count, graph_share, seed, urls, done))
    server.start()
    try:
        url = urls.get(timeout=600)
        store = _fresh_store(tmp, name)
        applier = Applier(store, load_mapping(), source_name(url))
        settings = StreamSettings(url, batch_size=BATCH_SIZE, stop_after=count)
        ingester = Ingester(applier, settings)
        started = time.perf_counter()
        asyncio.run(ingester.run(asyncio.Event()))
        elapsed = time.perf_counter() - started
        relationships = sum(1 for _ in store.snapshot().export_rows())
        position = store.ingest_position(source_name(url))
        store.close()
    finally:
        done.set()
        server.join(30)
    return {
        "workload": name,
        "events": count,
        "graph_share": graph_share,
        "events_per_s": round(count / elapsed),
        "seconds": round(elapsed, 2),
        "relationships": relationships,
        "position_ok": position == count,
    }


def measure_apply(count: int, seed: int, tmp: Path) -> dict[str, object]:
    """The graph workload's events, decoded beforehand, straight into the applier."""
    mapping = load_mapping()
    events: list[Event] = [decode_frame(f, mapping.collections) for _, f in frames(count, 1, seed)]
    store = _fresh_store(tmp, "apply")
    applier = Applier(store, mapping, "bench")
    started = time.perf_counter()
    for i in range(0, len(events), BATCH_SIZE):
        applier.apply(events[i : i + BATCH_SIZE])
    elapsed = time.perf_counter() - started
    store.close()
    return {
        "workload": "apply",
        "events": count,
        "graph_share": 1.0,
        "events_per_s": round(count / elapsed),
        "seconds": round(elapsed, 2),
    }


def measure_ingest(events: int, seed: int) -> list[dict[str, object]]:
    """The ingest table of ``policyd bench``: graph, mixed and apply-only rates."""
    with tempfile.TemporaryDirectory(prefix="policyd-bench-ingest-") as tmp:
        return [
            measure_stream("graph", events, 1.0, seed, Path(tmp)),
            measure_stream("mixed", events, 0.2, seed, Path(tmp)),
            measure_apply(events, seed, Path(tmp)),
        ]
