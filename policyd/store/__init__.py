"""Package store holds the Store protocol and its roles, the backends, and ``open_store`` (by URL).

Backends are imported lazily, so ``import policyd.store`` loads neither
sqlite-utils' backend nor psycopg.
"""

from __future__ import annotations

from policyd.errors import InvalidRequestError
from policyd.filters import Precondition, PreconditionKind, RelationshipFilter
from policyd.relationship import RelationshipKey
from policyd.store.base import (
    ChangeEvent,
    ChangeKind,
    ChangeLog,
    Cursor,
    GcResult,
    ReadPage,
    Retention,
    Revision,
    RevisionHold,
    SnapshotReader,
    Store,
    StoredPolicy,
    Writer,
)

__all__ = [
    "ChangeEvent",
    "ChangeKind",
    "ChangeLog",
    "Cursor",
    "GcResult",
    "Precondition",
    "PreconditionKind",
    "ReadPage",
    "RelationshipFilter",
    "RelationshipKey",
    "Retention",
    "Revision",
    "RevisionHold",
    "SnapshotReader",
    "Store",
    "StoredPolicy",
    "Writer",
    "open_store",
]


def open_store(url: str, *, read_dsn: str | None = None) -> Store:
    """Open the store a URL names.

    ``memory://`` (MemoryStore), ``sqlite://:memory:``, ``sqlite:///relative/or/absolute``
    (``sqlite:///data/policyd.db`` is ``/data/policyd.db``; a bare path also
    works), ``postgresql://user:pass@host/db[?schema=name]`` (also
    ``postgres://``; ``schema`` picks the PostgreSQL schema for the tables).
    ``read_dsn`` names a PostgreSQL hot standby for snapshot reads.
    """
    if read_dsn is not None and not url.startswith(("postgresql://", "postgres://")):
        raise InvalidRequestError(
            "a read DSN (a hot standby) needs a PostgreSQL store", field="read_dsn"
        )
    if url == "memory://" or url == "memory:":
        from policyd.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:"):
        from policyd.store.sqlite import SqliteStore

        rest = url.removeprefix("sqlite:")
        if rest.startswith("//"):
            rest = rest[2:]
        if rest in ("", ":memory:", "/:memory:"):
            return SqliteStore(":memory:")
        return SqliteStore(rest)
    if url.startswith(("postgresql://", "postgres://")):
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        from policyd.store.postgres import PostgresStore

        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        schema_name = next((v for k, v in query if k == "schema"), "public")
        dsn = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        return PostgresStore(dsn, schema_name=schema_name, read_dsn=read_dsn)
    if url and ":" not in url.split("/", 1)[0]:
        from policyd.store.sqlite import SqliteStore

        return SqliteStore(url)  # a bare path: a SQLite file
    raise InvalidRequestError(
        f"unknown store URL {url!r}: expected memory://, sqlite://PATH, a file path "
        "or postgresql://…",
        field="store",
    )
