"""Package store.sqlite.migrations creates and upgrades the SQLite schema with sqlite-utils.

Each migration runs once, in order, inside ``BEGIN IMMEDIATE`` so that several
processes opening a new file at once do not race; applied names are recorded
in ``migrations``. sqlite-utils creates the plain tables and indexes; the
``relationships`` table is written as DDL because it is ``WITHOUT ROWID``
(clustered on its primary key, so resource → subjects reads need no second
lookup) and two of its indexes are partial, which sqlite-utils cannot express.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

from policyd.store.base import LIVE
from policyd.store.sqlcommon import KEY
from policyd.tokens import STORE_IDENTITY_BYTES

# Built after a bulk load into an empty store rather than maintained row by row
# (benchmarks/store_bench.py, "import"): sorting once is faster than random inserts.
SECONDARY_INDEXES = {
    "relationships_by_subject": (
        "CREATE INDEX IF NOT EXISTS relationships_by_subject ON relationships "
        "(subject_type, subject_id, subject_relation, resource_type, relation, resource_id, "
        "deleted_revision, created_revision, expires_at, caveat_name, caveat_context)"
    ),
    "relationships_by_created": (
        "CREATE INDEX IF NOT EXISTS relationships_by_created ON relationships (created_revision)"
    ),
}


def _initial(db: sqlite_utils.Database) -> None:
    db.execute(
        f"""CREATE TABLE relationships (
            resource_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            relation TEXT NOT NULL,
            subject_type TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            subject_relation TEXT NOT NULL,
            created_revision INTEGER NOT NULL,
            deleted_revision INTEGER NOT NULL DEFAULT {LIVE},
            caveat_name TEXT,
            caveat_context TEXT,
            expires_at INTEGER,
            PRIMARY KEY ({KEY}, created_revision)
        ) WITHOUT ROWID"""
    )
    for ddl in SECONDARY_INDEXES.values():
        db.execute(ddl)
    db.execute(
        "CREATE INDEX relationships_by_deleted ON relationships (deleted_revision) "
        f"WHERE deleted_revision < {LIVE}"
    )
    db.execute(
        "CREATE INDEX relationships_by_expiry ON relationships (expires_at) "
        "WHERE expires_at IS NOT NULL"
    )
    db.table("store_state").create(
        {"id": int, "head": int, "oldest": int, "policy_revision": int},
        pk="id",
        not_null=["head", "oldest", "policy_revision"],
    )
    db.table("store_state").insert({"id": 1, "head": 0, "oldest": 0, "policy_revision": 0})
    db.table("revisions").create({"revision": int, "created_at": int}, pk="revision")
    db.table("revisions").insert({"revision": 0, "created_at": int(time.time() * 1_000_000)})
    db.table("policies").create(
        {"revision": int, "text": str, "schema_json": str},
        pk="revision",
        not_null=["text", "schema_json"],
    )
    db.table("revision_holds").create(
        {"id": str, "revision": int, "expires_at": int},
        pk="id",
        not_null=["revision", "expires_at"],
    )
    db.table("revision_holds").create_index(["revision"])


def _store_identity(db: sqlite_utils.Database) -> None:
    """Give the store its identity (see policyd.tokens): random, made once, never changed."""
    db.execute("ALTER TABLE store_state ADD COLUMN store_id BLOB")
    db.execute(f"UPDATE store_state SET store_id = randomblob({STORE_IDENTITY_BYTES})")


def _ingest_records(db: sqlite_utils.Database) -> None:
    """Tables of ``RecordSink`` (see policyd.store.records): records, their links, positions."""
    db.execute(
        "CREATE TABLE ingest_records (record_uri TEXT PRIMARY KEY, rev TEXT NOT NULL, "
        "live INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        f"CREATE TABLE ingest_links (record_uri TEXT NOT NULL, {_KEY_DDL}, "
        f"PRIMARY KEY (record_uri, {KEY})) WITHOUT ROWID"
    )
    db.execute(f"CREATE INDEX ingest_links_by_relationship ON ingest_links ({KEY})")
    db.execute(
        "CREATE TABLE ingest_positions (source TEXT PRIMARY KEY, position INTEGER NOT NULL, "
        "updated_at INTEGER NOT NULL)"
    )


_KEY_DDL = ", ".join(f"{c} TEXT NOT NULL" for c in KEY.split(", "))

MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _initial),
    ("0002_store_identity", _store_identity),
    ("0003_ingest_records", _ingest_records),
]


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration not yet applied; ``conn`` must be in autocommit mode.

    A file that lacks none is only read, so start-up needs no write: a store
    on a full disk or in a read-only file still opens and serves reads.
    """
    if not pending(conn):
        return
    db = sqlite_utils.Database(conn, execute_plugins=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        db.table("migrations").create(
            {"name": str, "applied_at": float}, pk="name", if_not_exists=True
        )
        applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        for name, step in MIGRATIONS:
            if name not in applied:
                step(db)
                conn.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time())
                )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def pending(conn: sqlite3.Connection) -> bool:
    """Whether any migration is still to be applied (read without taking the write lock)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'"
    ).fetchone()
    if exists is None:
        return True
    applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    return any(name not in applied for name, _ in MIGRATIONS)
