"""Migrations upgrade stores an older policyd made: each gets its identity once, data untouched."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from policyd.filters import RelationshipFilter
from policyd.relationship import Operation, RelationshipUpdate, parse_relationship
from policyd.store.base import Store
from policyd.store.sqlite import SqliteStore
from policyd.tokens import STORE_IDENTITY_BYTES
from tests.store.schemas import POLICY_TEXT, base_schema

IDENTITY_MIGRATION = "0002_store_identity"


def _fill(store: Store) -> int:
    store.write_policy(POLICY_TEXT, base_schema())
    update = RelationshipUpdate(Operation.TOUCH, parse_relationship("document:1#viewer@user:a"))
    return store.write([update])


def _upgrade_twice(open_store: Callable[[], Store], revision: int) -> None:
    """Open the old store twice: the first open gives it an identity, the second keeps it."""
    upgraded = open_store()
    identity = upgraded.identity
    assert len(identity) == STORE_IDENTITY_BYTES
    assert upgraded.head_revision() == revision
    [relationship] = upgraded.snapshot().read(RelationshipFilter()).relationships
    assert str(relationship) == "document:1#viewer@user:a"
    upgraded.close()
    again = open_store()
    assert again.identity == identity
    again.close()


def test_a_sqlite_store_from_before_identities_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteStore(path)
    revision = _fill(store)
    store.close()
    with sqlite3.connect(path) as conn:  # back to what the first release created
        conn.execute("ALTER TABLE store_state DROP COLUMN store_id")
        conn.execute("DELETE FROM migrations WHERE name = ?", (IDENTITY_MIGRATION,))
    _upgrade_twice(lambda: SqliteStore(path), revision)


@pytest.mark.postgres
def test_a_postgres_store_from_before_identities_gets_one(pg_dsn: str) -> None:
    import psycopg

    from policyd.store.postgres import PostgresStore

    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(pg_dsn, schema_name=schema_name)
    try:
        revision = _fill(store)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema_name}".encode())
            conn.execute(b"ALTER TABLE store_state DROP COLUMN store_id")
            conn.execute("DELETE FROM migrations WHERE name = %s", (IDENTITY_MIGRATION,))
        _upgrade_twice(lambda: PostgresStore(pg_dsn, schema_name=schema_name), revision)
    finally:
        store.drop()
        store.close()


def test_every_new_store_has_its_own_identity(tmp_path: Path) -> None:
    from policyd.store.memory import MemoryStore

    stores: list[Store] = [MemoryStore(), MemoryStore(), SqliteStore(":memory:")]
    stores += [SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")]
    assert len({s.identity for s in stores}) == len(stores)
    for s in stores:
        s.close()
