"""Reads on a PostgreSQL hot standby: a real primary and a streaming standby of the test's own.

The standby is made by ``pg_basebackup -R`` from the primary (tests/store/clusters.py),
so replication is PostgreSQL's own. Replay is paused and resumed on the
standby to make it lag on purpose.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from policyd.store import open_store
from policyd.store.postgres import PostgresStore
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
    clusters: tuple[Cluster, Cluster], replica_wait: float
) -> Iterator[PostgresStore]:
    """A store on the primary reading from the standby, in a fresh schema the standby has."""
    primary, standby = clusters
    schema = f"r_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(
        primary.dsn,
        schema_name=schema,
        read_dsn=standby.dsn,
        replica_wait=replica_wait,
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
    with replicated_store(clusters, replica_wait=0.2) as store:
        yield store, clusters[1]


def standby_head(standby: Cluster, schema: str) -> int:
    """The head revision of ``schema`` the standby has replayed, -1 before its tables."""
    with psycopg.connect(standby.dsn, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.store_state",)).fetchone()
        if found is None or found[0] is None:
            return -1
        row = conn.execute(f"SELECT head FROM {schema}.store_state".encode()).fetchone()
    return -1 if row is None else int(row[0])


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
