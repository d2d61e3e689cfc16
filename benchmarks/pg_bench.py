"""PostgreSQL scale-out benchmarks: import rate, writers on two servers, propagation, a standby.

Prints numbers; asserts nothing. Each run uses fresh PostgreSQL schemas and
drops them. "Servers" are PostgresStore + Engine pairs in one process, each
with its own connections, following the change log as ``policyd serve`` does.

.venv/bin/python benchmarks/pg_bench.py --dsn postgresql://… [--read-dsn postgresql://standby…]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

from policyd import Consistency, Engine
from policyd.relationship import (
    Operation,
    Relationship,
    RelationshipUpdate,
    parse_object,
    parse_relationship,
    parse_subject,
)
from policyd.store.postgres import PostgresStore

POLICY = """
definition user {}
definition document {
    relation viewer: user
    permission view = viewer
}
"""


def relationships(count: int, prefix: str) -> Iterator[Relationship]:
    for i in range(count):
        yield parse_relationship(f"document:{prefix}{i % 1000}#viewer@user:{prefix}u{i}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def import_rate(dsn: str, count: int) -> None:
    store = PostgresStore(dsn, schema_name=f"b_{uuid.uuid4().hex[:12]}")
    try:
        engine = Engine(store, index=False)
        engine.write_policy(POLICY)
        for label in ("empty store", "non-empty store"):
            start = time.perf_counter()
            store.import_relationships(relationships(count, uuid.uuid4().hex[:6]))
            seconds = time.perf_counter() - start
            print(f"import {count:,} relationships, {label}: {count / seconds:,.0f}/s")
    finally:
        store.drop()
        store.close()


def two_writers(dsn: str, seconds: float, with_import: int) -> None:
    schema = f"b_{uuid.uuid4().hex[:12]}"
    first = PostgresStore(dsn, schema_name=schema)
    second = PostgresStore(dsn, schema_name=schema)
    try:
        Engine(first, index=False).write_policy(POLICY)
        counts = [0, 0]
        latencies: list[float] = []
        stop = time.monotonic() + seconds

        def write(index: int, store: PostgresStore) -> None:
            n = 0
            while time.monotonic() < stop:
                rel = parse_relationship(f"document:w{index}#viewer@user:w{index}x{n}")
                began = time.perf_counter()
                store.write([RelationshipUpdate(Operation.TOUCH, rel)])
                latencies.append(time.perf_counter() - began)
                n += 1
            counts[index] = n

        importer = None
        if with_import:
            bulk = PostgresStore(dsn, schema_name=schema)
            importer = threading.Thread(
                target=lambda: bulk.import_relationships(relationships(with_import, "imp"))
            )
            importer.start()
        threads = [
            threading.Thread(target=write, args=(i, s)) for i, s in enumerate((first, second))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if importer is not None:
            importer.join()
            bulk.close()
        total = sum(counts)
        beside = f" beside a {with_import:,}-relationship import" if with_import else ""
        print(
            f"single writes from 2 servers{beside}: {total / seconds:,.0f}/s "
            f"(p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms)"
        )
    finally:
        second.close()
        first.drop()
        first.close()


def propagation(dsn: str, writes: int) -> None:
    schema = f"b_{uuid.uuid4().hex[:12]}"
    a_store = PostgresStore(dsn, schema_name=schema)
    Engine(a_store, index=False).write_policy(POLICY)
    b_store = PostgresStore(dsn, schema_name=schema)
    a, b = Engine(a_store), Engine(b_store)
    b.follow()
    try:
        lags = []
        for n in range(writes):
            rel = parse_relationship(f"document:p#viewer@user:p{n}")
            revision = a_store.write([RelationshipUpdate(Operation.TOUCH, rel)])
            began = time.perf_counter()
            while (b.stats().index_revision or 0) < revision:
                time.sleep(0.0002)
            lags.append(time.perf_counter() - began)
        print(
            f"propagation A→B (LISTEN/NOTIFY follower), {writes} writes: "
            f"p50 {statistics.median(lags) * 1000:.1f} ms, "
            f"p99 {percentile(lags, 0.99) * 1000:.1f} ms"
        )
    finally:
        b.close()
        a.close()
        b_store.close()
        a_store.drop()
        a_store.close()


def replica_checks(dsn: str, read_dsn: str, checks: int) -> None:
    schema = f"b_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema_name=schema, read_dsn=read_dsn)
    try:
        engine = Engine(store, index=False)  # every Check reads the store: the standby
        engine.write_policy(POLICY)
        store.import_relationships(relationships(10_000, "r"))
        resource, subject = parse_object("document:r1"), parse_subject("user:ru1")
        for label, with_token in (("no token", False), ("a fresh write's token", True)):
            times = []
            for n in range(checks):
                consistency = None
                if with_token:
                    token = engine.write(
                        [
                            RelationshipUpdate(
                                Operation.TOUCH,
                                parse_relationship(f"document:t#viewer@user:t{n}"),
                            )
                        ]
                    )
                    consistency = Consistency.at_least_as_fresh(token)
                began = time.perf_counter()
                assert engine.check(resource, "view", subject, consistency=consistency).allowed
                times.append(time.perf_counter() - began)
            print(
                f"Check on the standby, {label}: p50 {statistics.median(times) * 1000:.2f} ms, "
                f"p99 {percentile(times, 0.99) * 1000:.2f} ms "
                f"(standby reads {store.replica_reads}, "
                f"primary fallbacks {store.primary_fallbacks})"
            )
    finally:
        store.drop()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--read-dsn", help="a streaming standby of --dsn")
    parser.add_argument("--count", type=int, default=100_000, help="relationships per import")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the writer runs")
    args = parser.parse_args()
    import_rate(args.dsn, args.count)
    two_writers(args.dsn, args.seconds, 0)
    two_writers(args.dsn, args.seconds, args.count)
    propagation(args.dsn, 300)
    if args.read_dsn:
        replica_checks(args.dsn, args.read_dsn, 300)


if __name__ == "__main__":
    main()
