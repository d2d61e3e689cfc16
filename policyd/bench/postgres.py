"""Package postgres is ``policyd bench --sections postgres``: PostgreSQL past one server.

Import rate, single writes from two servers (alone and beside an import, by
one of them or by another process; stores in this process, and ``policyd
serve`` processes over gRPC), propagation between servers, Checks on a hot
standby with and without a token, and ``policyd serve`` started on a
PostgreSQL store of 1M relationships (``--pg-startup`` counts): spawn to
first Check, and RSS, without an index snapshot, building one and from one.
Each run uses fresh PostgreSQL schemas and drops them. "Servers" are PostgresStore + Engine
pairs in one process, each with its own connections, following the change
log as ``policyd serve`` does (the start-up rows run ``policyd serve``
itself). The durability is the server's own (say which when quoting: fsync
off is not a serving rate).

    policyd bench --sections postgres --pg-dsn postgresql://… [--pg-read-dsn postgresql://…]
        [--pg-startup 1000000,10000000] [--pg-delay-ms 1]

``--pg-delay-ms`` runs the single writes once more through ``delay_proxy``,
which adds that much to every round trip: on loopback a lock held across a
transaction's round trips costs almost nothing, across a network it costs
all of them.
"""

from __future__ import annotations

import multiprocessing
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from policyd import Consistency, Engine
from policyd.bench.delay_proxy import delayed
from policyd.bench.grpc_load import serve_process
from policyd.bench.measure import percentile
from policyd.bench.startup import EMPTY_QUERY, start_columns, start_once
from policyd.bench.workloads import Query
from policyd.bench.write_load import run_writers
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
    """``count`` viewers over 1,000 documents, their ids starting with ``prefix``."""
    for i in range(count):
        yield parse_relationship(f"document:{prefix}{i % 1000}#viewer@user:{prefix}u{i}")


Row = dict[str, Any]


def import_rate(dsn: str, count: int) -> list[Row]:
    """Relationships imported per second into an empty store, then into a non-empty one."""
    rows: list[Row] = []
    store = PostgresStore(dsn, schema_name=f"b_{uuid.uuid4().hex[:12]}")
    try:
        engine = Engine(store, index=False)
        engine.write_policy(POLICY)
        for label in ("empty store", "non-empty store"):
            start = time.perf_counter()
            store.import_relationships(relationships(count, uuid.uuid4().hex[:6]))
            seconds = time.perf_counter() - start
            rows.append({"measure": f"import {count:,}, {label}", "per_s": round(count / seconds)})
    finally:
        store.drop()
        store.close()
    return rows


def _import_into(dsn: str, schema: str, count: int) -> None:
    """Import ``count`` relationships into ``schema`` (the body of another process)."""
    store = PostgresStore(dsn, schema_name=schema)
    try:
        store.import_relationships(relationships(count, "imp"))
    finally:
        store.close()


def two_writers(
    dsn: str,
    seconds: float,
    with_import: int,
    clients: int = 1,
    network: str = "",
    *,
    import_elsewhere: bool = False,
) -> Row:
    """Single writes from two servers, ``clients`` threads each, optionally beside an import.

    ``network`` names the delay the connections go through (``--pg-delay-ms``).
    The import runs in a thread of the writers' process, as an import sent to
    one of the two servers would, or with ``import_elsewhere`` in a process of
    its own, a third server: then its Python work (parsing, validating, COPY
    buffers) does not hold the writers' interpreter lock.
    """
    schema = f"b_{uuid.uuid4().hex[:12]}"
    stores = [PostgresStore(dsn, schema_name=schema) for _ in range(2)]
    try:
        Engine(stores[0], index=False).write_policy(POLICY)
        counts = [0] * (2 * clients)
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

        importer: threading.Thread | multiprocessing.process.BaseProcess | None = None
        if with_import:
            if import_elsewhere:
                importer = multiprocessing.get_context("spawn").Process(
                    target=_import_into, args=(dsn, schema, with_import)
                )
            else:
                importer = threading.Thread(target=_import_into, args=(dsn, schema, with_import))
            importer.start()
        threads = [
            threading.Thread(target=write, args=(i, stores[i % 2])) for i in range(2 * clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if importer is not None:
            importer.join()
        total = sum(counts)
        where = "another process" if import_elsewhere else "one of them"
        beside = f" beside a {with_import:,} import by {where}" if with_import else ""
        return {
            "measure": f"single writes, 2 servers x {clients} clients{beside}{network}",
            "per_s": round(total / seconds),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        }
    finally:
        stores[1].close()
        stores[0].drop()
        stores[0].close()


def delayed_writers(dsn: str, seconds: float, delay_ms: float) -> list[Row]:
    """``two_writers`` through a proxy that adds ``delay_ms`` to every round trip to PostgreSQL."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres") or parts.hostname is None:
        raise ValueError(f"--pg-delay-ms needs --pg-dsn as a postgresql:// URL, not {dsn!r}")
    with delayed(parts.hostname, parts.port or 5432, delay_ms) as port:
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
        proxied = urlunsplit(parts._replace(netloc=netloc))
        with psycopg.connect(proxied) as conn:
            conn.execute("SELECT 1")
            began = time.perf_counter()
            for _ in range(50):
                conn.execute("SELECT 1").fetchone()
            round_trip = (time.perf_counter() - began) / 50 * 1000
        network = f", {round_trip:.2f} ms round trip ({delay_ms:g} ms added)"
        return [two_writers(proxied, seconds, 0, clients, network) for clients in (1, 4)]


def served_writers(dsn: str, seconds: float, clients: int = 8) -> Row:
    """Writes over gRPC to two ``policyd serve`` processes on one schema, ``clients`` each.

    Each client is a thread of a client process (one per server) writing in a
    closed loop (``write_load``); each server group-commits what its clients
    send. Servers, clients and PostgreSQL share the machine's cores.
    """
    schema = f"b_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema_name=schema)
    try:
        Engine(store, index=False).write_policy(POLICY)
        token = secrets.token_hex(16)
        url = schema_url(dsn, schema)
        with serve_process(url, 1, token) as first, serve_process(url, 1, token) as second:
            row = run_writers(
                [first.target, second.target], token, 2 * clients, 2, seconds, 10**9, "pg"
            )
        return {
            "measure": f"gRPC writes, 2 policyd serve x {clients} clients",
            "per_s": row["writes_per_s"],
            "p50_ms": row["p50_ms"],
            "p99_ms": row["p99_ms"],
        }
    finally:
        store.drop()
        store.close()


def propagation(dsn: str, writes: int) -> Row:
    """How long a write on server A takes to reach server B's index (its follower)."""
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
        return {
            "measure": f"propagation A to B, {writes} writes",
            "p50_ms": round(percentile(lags, 0.5) * 1000, 2),
            "p99_ms": round(percentile(lags, 0.99) * 1000, 2),
        }
    finally:
        b.close()
        a.close()
        b_store.close()
        a_store.drop()
        a_store.close()


def replica_checks(dsn: str, read_dsn: str, checks: int) -> list[Row]:
    """Check latency on the standby (store reads, no index) without and with a fresh token."""
    rows: list[Row] = []
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
            rows.append(
                {
                    "measure": f"Check on the standby, {label}",
                    "p50_ms": round(percentile(times, 0.5) * 1000, 2),
                    "p99_ms": round(percentile(times, 0.99) * 1000, 2),
                    "standby_reads": store.replica_reads,
                    "primary_fallbacks": store.primary_fallbacks,
                    "conflict_retries": store.conflict_retries,
                }
            )
    finally:
        store.drop()
        store.close()
    return rows


def schema_url(dsn: str, schema: str) -> str:
    """The store URL of ``schema`` in ``dsn``'s database, for ``policyd serve --db``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"--pg-dsn must be a postgresql:// URL to serve from, not {dsn!r}")
    query = [*parse_qsl(parts.query), ("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def loaded_schema(dsn: str, count: int, prefix: str) -> Iterator[tuple[str, float]]:
    """A fresh schema holding POLICY and ``count`` relationships; its URL and import seconds."""
    schema = f"b_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema_name=schema)
    try:
        Engine(store, index=False).write_policy(POLICY)
        began = time.perf_counter()
        if count:
            store.import_relationships(relationships(count, prefix))
        yield schema_url(dsn, schema), time.perf_counter() - began
    finally:
        store.drop()
        store.close()


def serve_startup(dsn: str, count: int) -> list[Row]:
    """``policyd serve`` on a schema of ``count`` relationships: spawn to first Check, and RSS.

    As the SQLite start-up section does (bench/startup.py, whose ``start_once``
    runs each start): with no index snapshot (every relationship read from
    PostgreSQL), with a snapshot path but no file (read, then saved), and from
    that snapshot. Each start answers a Check allowed by construction of
    ``relationships`` and one of a subject that does not exist. ``above_empty``
    is less the RSS of the same server on an empty schema.
    """
    with loaded_schema(dsn, 0, "") as (url, _):
        baseline = start_once(url, "off", EMPTY_QUERY).rss
    prefix = "s"
    resource = parse_object(f"document:{prefix}0")
    allowed = Query(resource, "view", parse_subject(f"user:{prefix}u0"), True)
    denied = Query(resource, "view", parse_subject(f"user:{prefix}absent"), False)
    rows: list[Row] = []
    with loaded_schema(dsn, count, prefix) as (url, import_s):
        rows.append(
            {
                "measure": f"import {count:,} to serve from",
                "per_s": round(count / import_s),
                "import_s": round(import_s, 1),
            }
        )
        with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
            snapshot = Path(tmp) / "startup.index"
            starts = [
                ("no snapshot", "off"),
                ("snapshot path, no file: build, save", str(snapshot)),
                ("from the snapshot", str(snapshot)),
            ]
            for name, path in starts:
                start = start_once(url, path, allowed, denied)
                columns = start_columns(start, count, baseline, snapshot)
                rows.append({"measure": f"serve {count:,}, {name}", **columns})
    return rows


def postgres_rows(
    dsn: str,
    read_dsn: str | None,
    count: int,
    seconds: float,
    startup: Sequence[int] = (),
    delay_ms: float = 0.0,
) -> list[Row]:
    """Every measurement of the section, as rows (the standby's only with ``read_dsn``).

    ``startup`` holds the relationship counts ``policyd serve`` starts on;
    ``delay_ms``, when not 0, adds rows of writes through a delaying proxy.
    """
    rows = import_rate(dsn, count)
    rows.append(two_writers(dsn, seconds, 0))
    rows.append(two_writers(dsn, seconds, 0, clients=4))
    rows.append(two_writers(dsn, seconds, count))
    rows.append(two_writers(dsn, seconds, count, import_elsewhere=True))
    rows.append(served_writers(dsn, seconds))
    if delay_ms:
        rows += delayed_writers(dsn, seconds, delay_ms)
    rows.append(propagation(dsn, 300))
    if read_dsn:
        rows += replica_checks(dsn, read_dsn, 300)
    for relationship_count in startup:
        rows += serve_startup(dsn, relationship_count)
    return rows
