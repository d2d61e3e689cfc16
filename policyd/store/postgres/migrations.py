"""Package store.postgres.migrations creates and upgrades the PostgreSQL schema.

Each migration is a list of statements applied once, in order, in one
transaction holding an advisory lock, so replicas starting together migrate
once. Key columns use the "C" collation so key order is code-point order, as
in SQLite and in Python.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from policyd.store.base import LIVE
from policyd.store.postgres.revisions import FUNCTIONS
from policyd.store.sqlcommon import KEY
from policyd.tokens import STORE_IDENTITY_BYTES

MIGRATION_LOCK = 0x706F6C6963796400  # "policyd\0"

SECONDARY_INDEXES = {
    "relationships_by_subject": (
        "CREATE INDEX IF NOT EXISTS relationships_by_subject ON relationships "
        "(subject_type, subject_id, subject_relation, resource_type, relation, resource_id) "
        "INCLUDE (created_revision, deleted_revision, expires_at)"
    ),
    "relationships_by_created": (
        "CREATE INDEX IF NOT EXISTS relationships_by_created ON relationships (created_revision)"
    ),
}

_INITIAL = [
    f"""CREATE TABLE relationships (
        resource_type TEXT COLLATE "C" NOT NULL,
        resource_id TEXT COLLATE "C" NOT NULL,
        relation TEXT COLLATE "C" NOT NULL,
        subject_type TEXT COLLATE "C" NOT NULL,
        subject_id TEXT COLLATE "C" NOT NULL,
        subject_relation TEXT COLLATE "C" NOT NULL,
        created_revision BIGINT NOT NULL,
        deleted_revision BIGINT NOT NULL DEFAULT {LIVE},
        caveat_name TEXT,
        caveat_context TEXT,
        expires_at BIGINT,
        PRIMARY KEY ({KEY}, created_revision)
    )""",
    *SECONDARY_INDEXES.values(),
    "CREATE INDEX relationships_by_deleted ON relationships (deleted_revision) "
    f"WHERE deleted_revision < {LIVE}",
    "CREATE INDEX relationships_by_expiry ON relationships (expires_at) "
    "WHERE expires_at IS NOT NULL",
    """CREATE TABLE store_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        head BIGINT NOT NULL,
        oldest BIGINT NOT NULL,
        policy_revision BIGINT NOT NULL
    )""",
    "INSERT INTO store_state VALUES (1, 0, 0, 0)",
    "CREATE TABLE revisions (revision BIGINT PRIMARY KEY, created_at BIGINT NOT NULL)",
    "INSERT INTO revisions VALUES (0, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT)",
    """CREATE TABLE policies (
        revision BIGINT PRIMARY KEY,
        text TEXT NOT NULL,
        schema_json TEXT NOT NULL
    )""",
    """CREATE TABLE revision_holds (
        id TEXT PRIMARY KEY,
        revision BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    )""",
    "CREATE INDEX revision_holds_by_revision ON revision_holds (revision)",
]

# The store's identity (see policyd.tokens): random, made once, never changed. The bytes
# come from gen_random_uuid() (built in since PostgreSQL 13, drawn from pg_strong_random).
_STORE_IDENTITY = [
    "ALTER TABLE store_state ADD COLUMN store_id BYTEA",
    "UPDATE store_state SET store_id = "
    f"substring(decode(md5(gen_random_uuid()::text), 'hex') from 1 for {STORE_IDENTITY_BYTES})",
    "ALTER TABLE store_state ALTER COLUMN store_id SET NOT NULL",
]

# Tables of ``RecordSink`` (see policyd.store.records): records, their links, positions.
_KEY_DDL = ", ".join(f'{c} TEXT COLLATE "C" NOT NULL' for c in KEY.split(", "))
_INGEST_RECORDS = [
    'CREATE TABLE ingest_records (record_uri TEXT COLLATE "C" PRIMARY KEY, rev TEXT NOT NULL, '
    "live BOOLEAN NOT NULL)",
    f'CREATE TABLE ingest_links (record_uri TEXT COLLATE "C" NOT NULL, {_KEY_DDL}, '
    f"PRIMARY KEY (record_uri, {KEY}))",
    f"CREATE INDEX ingest_links_by_relationship ON ingest_links ({KEY})",
    "CREATE TABLE ingest_positions (source TEXT PRIMARY KEY, position BIGINT NOT NULL, "
    "updated_at BIGINT NOT NULL)",
]

# Revisions numbered by transaction id (see policyd.store.postgres.revisions): the offset
# starts at the head, so every revision numbered from now on is above every earlier one;
# the plain writes' statements become functions (``FUNCTIONS``).
_XID_REVISIONS = [
    "ALTER TABLE store_state ADD COLUMN revision_offset BIGINT NOT NULL DEFAULT 0",
    "UPDATE store_state SET revision_offset = head",
    *FUNCTIONS,
]

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("0001_initial", _INITIAL),
    ("0002_store_identity", _STORE_IDENTITY),
    ("0003_ingest_records", _INGEST_RECORDS),
    ("0004_xid_revisions", _XID_REVISIONS),
]


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema_name: str) -> None:
    """Create ``schema_name`` if needed and apply every migration not yet applied there.

    A schema that lacks none is only read, so start-up needs no write (a
    read-only transaction, a database out of disk space, still opens).
    """
    if not pending(conn, schema_name):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema_name)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        for name, statements in MIGRATIONS:
            if name not in applied:
                for statement in statements:
                    conn.execute(statement.encode())
                conn.execute("INSERT INTO migrations (name) VALUES (%s)", (name,))


def pending(conn: psycopg.Connection[tuple[object, ...]], schema_name: str) -> bool:
    """Whether ``schema_name`` lacks its tables or any migration (read, no lock taken)."""
    table = f'"{schema_name}".migrations'
    (exists,) = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() or (False,)
    if not exists:
        return True
    applied = {
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT name FROM {}.migrations").format(sql.Identifier(schema_name))
        )
    }
    return any(name not in applied for name, _ in MIGRATIONS)
