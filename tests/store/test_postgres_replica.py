"""Reads on a PostgreSQL hot standby: a real primary and a streaming standby of the test's own.

The standby is made by ``pg_basebackup -R`` from the primary (tests/store/clusters.py),
so replication is PostgreSQL's own. Replay is paused and resumed on the
standby to make it lag on purpose, and locks taken on the primary are
replayed there to make it cancel a read.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from policyd.store import open_store
from policyd.store.postgres import PostgresStore
from policyd.store.postgres.store import PgTimeouts
from tests.store.clusters import Cluster, own_cluster, scratch_directory, wait_until
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import everything, touch

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """A primary and its streaming standby, shared by this module's tests."""
    with own_cluster() as primary, scratch_directory() as root:
        standby = primary.standby(root / "standby")
        try:
            yield primary, standby
        finally:
            standby.stop("immediate")


@contextlib.contextmanager
def replicated_store(
    clusters: tuple[Cluster, Cluster],
    schema: str,
    replica_wait: float,
    timeouts: PgTimeouts | None = None,
) -> Iterator[PostgresStore]:
    """A store on the primary reading from the standby, in a new ``schema`` the standby has."""
    primary, standby = clusters
    store = PostgresStore(
        primary.dsn,
        schema_name=schema,
        read_dsn=standby.dsn,
        replica_wait=replica_wait,
        timeouts=timeouts,
    )
    try:
        revision = store.write_policy(POLICY_TEXT, base_schema())
        # Until the standby has replayed the schema's tables, reading its head there fails
        # and the primary serves at once, whatever replica_wait says.
        assert wait_until(lambda: standby_head(standby, schema) >= revision)
        yield store
    finally:
        replay(standby, paused=False)
        store.drop()
        store.close()


@pytest.fixture
def replicated(clusters: tuple[Cluster, Cluster]) -> Iterator[tuple[PostgresStore, Cluster]]:
    """A store on the primary reading from the standby (replica_wait short: it may lag)."""
    with replicated_store(clusters, f"r_{uuid.uuid4().hex[:12]}", replica_wait=0.2) as store:
        yield store, clusters[1]


def standby_head(standby: Cluster, schema: str) -> int:
    """The head revision of ``schema`` the standby has replayed, -1 before its tables."""
    with psycopg.connect(standby.dsn, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.store_state",)).fetchone()
        if found is None or found[0] is None:
            return -1
        row = conn.execute(f"SELECT head FROM {schema}.store_state".encode()).fetchone()
    return -1 if row is None else int(row[0])


def configure(cluster: Cluster, name: str, setting: str | None) -> None:
    """Set a server setting with ALTER SYSTEM and reload (None: back to its default)."""
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        if setting is None:
            conn.execute(f"ALTER SYSTEM RESET {name}".encode())
        else:
            conn.execute(f"ALTER SYSTEM SET {name} = '{setting}'".encode())
        conn.execute("SELECT pg_reload_conf()")


def replay(standby: Cluster, *, paused: bool) -> None:
    """Pause or resume WAL replay on the standby."""
    function = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
    with psycopg.connect(standby.dsn, autocommit=True) as conn:
        conn.execute(f"SELECT {function}()".encode())


def test_a_token_is_honoured_on_the_standby_and_a_lagging_one_falls_back_to_the_primary(
    replicated: tuple[PostgresStore, Cluster],
) -> None:
    store, standby = replicated
    first = store.write(touch("document:1#viewer@user:alice"))
    assert everything(store, first) == ["document:1#viewer@user:alice"]  # waited for replay
    assert (store.replica_reads, store.primary_fallbacks) == (1, 0)

    replay(standby, paused=True)
    second = store.write(touch("document:1#viewer@user:bob"))
    # The standby has not replayed the token's revision: the primary answers, right.
    assert everything(store, second) == [
        "document:1#viewer@user:alice",
        "document:1#viewer@user:bob",
    ]
    assert (store.replica_reads, store.primary_fallbacks) == (1, 1)
    # An older revision the standby has is still read there, exactly as it was.
    assert everything(store, first) == ["document:1#viewer@user:alice"]
    assert (store.replica_reads, store.primary_fallbacks) == (2, 1)

    replay(standby, paused=False)
    assert everything(store, second) == [
        "document:1#viewer@user:alice",
        "document:1#viewer@user:bob",
    ]
    assert (store.replica_reads, store.primary_fallbacks) == (3, 1)


def test_a_fresh_token_is_read_on_the_standby_without_waiting_for_the_wal_writer(
    clusters: tuple[Cluster, Cluster],
) -> None:
    # The head's advance commits with synchronous_commit off: its WAL leaves the primary
    # when something flushes it. With the WAL writer slowed to 10 s, only the reader's own
    # flush gets the head to the standby within the 5 s the reader waits for it.
    configure(clusters[0], "wal_writer_delay", "10s")
    try:
        with replicated_store(clusters, f"r_{uuid.uuid4().hex[:12]}", replica_wait=5.0) as store:
            written = store.write(touch("document:1#viewer@user:alice"))
            assert everything(store, written) == ["document:1#viewer@user:alice"]
            assert (store.replica_reads, store.primary_fallbacks) == (1, 0)
    finally:
        configure(clusters[0], "wal_writer_delay", None)


def test_writes_and_the_change_log_stay_on_the_primary(
    replicated: tuple[PostgresStore, Cluster],
) -> None:
    store, standby = replicated
    replay(standby, paused=True)
    revision = store.write(touch("document:2#viewer@user:carol"))
    assert store.head_revision() == revision
    assert [e.revision for e in store.changes(revision - 1)] == [revision]


def test_a_read_dsn_needs_a_postgres_store(clusters: tuple[Cluster, Cluster]) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        open_store("memory://", read_dsn=clusters[1].dsn)


def locks_on_standby(standby: Cluster, table: str, *, granted: bool) -> int:
    """How many locks on ``table`` the standby shows, granted or waited for."""
    with psycopg.connect(standby.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
            "AND relation = %s::regclass AND granted = %s",
            (table, granted),
        ).fetchone()
    assert row is not None
    return int(row[0])


def lock_exclusively(conn: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    """Take ACCESS EXCLUSIVE on ``table`` in ``conn``'s open transaction and ship it.

    PostgreSQL logs the lock for standbys; a commit elsewhere flushes the WAL
    holding that record, so the standby receives it now.
    """
    conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE".encode())
    with psycopg.connect(str(conn.info.dsn), autocommit=True) as other:
        other.execute("SELECT pg_current_xact_id()")


def test_a_read_the_standby_cancels_for_a_replay_conflict_is_read_again_on_the_primary(
    clusters: tuple[Cluster, Cluster], caplog: pytest.LogCaptureFixture
) -> None:
    # The standby's read waits behind a lock it replays (on relationships), holding one on
    # store_state; replaying a lock on store_state next conflicts with the read, which the
    # standby cancels ("conflict with recovery"). The primary answers it at the same revision.
    primary, standby = clusters
    schema = f"r_{uuid.uuid4().hex[:12]}"
    relationships, state = f"{schema}.relationships", f"{schema}.store_state"
    caplog.set_level(logging.INFO, logger="policyd.store")
    # Cancel at once, not after 30 s (or 1 s for a deadlock).
    configure(standby, "max_standby_streaming_delay", "0")
    try:
        # Lock waits far longer than the test: the read waits on both servers on purpose.
        with replicated_store(clusters, schema, 60.0, PgTimeouts(lock=120.0)) as store:
            first = store.write(touch("document:1#viewer@user:alice"))
            assert everything(store, first) == ["document:1#viewer@user:alice"]  # the standby's
            with (
                psycopg.connect(primary.dsn) as holds_relationships,
                psycopg.connect(primary.dsn) as holds_state,
                ThreadPoolExecutor(1) as reader,
            ):
                lock_exclusively(holds_relationships, relationships)
                assert wait_until(lambda: locks_on_standby(standby, relationships, granted=True))
                read = reader.submit(everything, store, first)
                assert wait_until(lambda: locks_on_standby(standby, relationships, granted=False))
                lock_exclusively(holds_state, state)
                assert wait_until(lambda: store.conflict_retries == 1)
                # The read now waits on the primary, behind the same two locks there.
                holds_state.rollback()
                holds_relationships.rollback()
                assert read.result(timeout=120) == ["document:1#viewer@user:alice"]
            counts = (store.replica_reads, store.primary_fallbacks, store.conflict_retries)
            assert counts == (2, 0, 1)
    finally:
        configure(standby, "max_standby_streaming_delay", None)
    assert any("the standby cancelled a read" in r.getMessage() for r in caplog.records)
