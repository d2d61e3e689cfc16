"""Store benchmarks: bulk import and point reads. Prints numbers; asserts nothing.

.venv/bin/python benchmarks/store_bench.py sqlite --count 1000000
.venv/bin/python benchmarks/store_bench.py postgres --dsn postgresql://… --count 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from policyd.relationship import ObjectRef, Relationship, SubjectRef
from policyd.schema.ir import AllowedSubject, Definition, Relation, Schema
from policyd.store.base import Store

SCHEMA = Schema(
    definitions={
        "user": Definition("user", {}, {}),
        "group": Definition(
            "group",
            {
                "member": Relation(
                    "member", (AllowedSubject("user"), AllowedSubject("group", "member"))
                )
            },
            {},
        ),
        "document": Definition(
            "document",
            {
                "viewer": Relation(
                    "viewer", (AllowedSubject("user"), AllowedSubject("group", "member"))
                ),
                "owner": Relation("owner", (AllowedSubject("user"),)),
            },
            {},
        ),
    }
)


def make_relationships(count: int, short_ids: bool = False, seed: int = 1) -> list[Relationship]:
    """``count`` distinct relationships, in random order.

    Ids are atproto-shaped (DIDs for users, AT-URIs for documents: ~70-byte
    resource ids) unless ``short_ids``, then ``u123`` and ``d456``.
    """
    rng = random.Random(seed)
    if short_ids:
        users = [f"u{i}" for i in range(50_000)]
    else:
        users = [f"did:plc:{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}" for _ in range(50_000)]
    out = []
    for i in range(count):
        if short_ids:
            doc = ObjectRef("document", f"d{i}")
        else:
            doc = ObjectRef("document", f"at://{users[i % len(users)]}/app.bsky.feed.post/{i:010d}")
        if i % 10 == 9:
            subject = SubjectRef("group", f"g{i % 997}", "member")
        else:
            subject = SubjectRef("user", users[(i * 7919) % len(users)])
        out.append(Relationship(doc, "viewer" if i % 4 else "owner", subject))
    rng.shuffle(out)
    return out


def timed_import(store: Store, relationships: list[Relationship]) -> None:
    start = time.perf_counter()
    store.import_relationships(iter(relationships))
    seconds = time.perf_counter() - start
    n = len(relationships)
    print(f"import: {n:,} relationships in {seconds:.2f} s = {n / seconds:,.0f} relationships/s")


def point_reads(store: Store, relationships: list[Relationship], reads: int) -> None:
    snapshot = store.snapshot()
    rng = random.Random(2)
    keys = []
    for _ in range(reads):
        r = rng.choice(relationships)
        key = r.key
        if rng.random() < 0.5:  # half misses: same resource, another subject
            key = (*key[:4], key[4] + "x", key[5])
        keys.append(key)
    get = snapshot.get
    for key in keys[:1000]:  # warm the page cache and the statement cache
        get(key)
    samples = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    found = 0
    for key in keys:
        t0 = clock()
        found += get(key) is not None
        samples.append(clock() - t0)
    seconds = time.perf_counter() - start
    samples.sort()
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(
        f"get at revision {snapshot.revision}: {reads:,} reads ({found:,} hits) "
        f"in {seconds:.2f} s = {reads / seconds:,.0f} reads/s, p50 {p50:.1f} µs, p99 {p99:.1f} µs, "
        f"mean {statistics.fmean(samples) / 1000:.1f} µs"
    )


def batch_reads(store: Store, relationships: list[Relationship], batches: int, size: int) -> None:
    snapshot = store.snapshot()
    rng = random.Random(3)
    samples = []
    for _ in range(batches):
        ids = [r.resource.id for r in rng.sample(relationships, size)]
        t0 = time.perf_counter_ns()
        snapshot.subjects_of("document", ids, "viewer")
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    print(
        f"subjects_of {size} ids: p50 {samples[len(samples) // 2] / 1000:.0f} µs, "
        f"p99 {samples[int(len(samples) * 0.99)] / 1000:.0f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backend", choices=["sqlite", "postgres", "memory"])
    parser.add_argument("--count", type=int, default=1_000_000, help="relationships to import")
    parser.add_argument("--reads", type=int, default=200_000, help="point reads to time")
    parser.add_argument("--path", help="SQLite file (default: a temporary file)")
    parser.add_argument("--dsn", default=os.environ.get("POLICYD_TEST_PG_DSN", ""))
    parser.add_argument(
        "--short-ids", action="store_true", help="short ids instead of DIDs/AT-URIs"
    )
    args = parser.parse_args()

    print(f"generating {args.count:,} relationships …", file=sys.stderr)
    relationships = make_relationships(args.count, args.short_ids)
    shape = "short ids" if args.short_ids else "DID subjects, AT-URI resources"
    print(f"{args.backend}, {args.count:,} relationships, {shape}")
    with tempfile.TemporaryDirectory() as tmp:
        store: Store
        if args.backend == "sqlite":
            from policyd.store.sqlite import SqliteStore

            path = Path(args.path) if args.path else Path(tmp) / "bench.db"
            store = SqliteStore(path)
        elif args.backend == "postgres":
            from policyd.store.postgres import PostgresStore

            if not args.dsn:
                parser.error("postgres needs --dsn or POLICYD_TEST_PG_DSN")
            store = PostgresStore(args.dsn, schema_name=f"bench_{uuid.uuid4().hex[:8]}")
        else:
            from policyd.store.memory import MemoryStore

            store = MemoryStore()
        try:
            store.write_policy("bench", SCHEMA)
            timed_import(store, relationships)
            point_reads(store, relationships, args.reads)
            batch_reads(store, relationships, 500, 100)
        finally:
            drop = getattr(store, "drop", None)
            if drop is not None:
                drop()
            store.close()


if __name__ == "__main__":
    main()
