"""Package store.postgres.store holds PostgresStore: the Store contract on PostgreSQL via psycopg 3.

Any number of policyd replicas may share one database. Every write first
updates the one ``store_state`` row (``head = head + 1``), whose row lock is
held until commit: writers are serialised, revisions commit in order, and a
reader who sees revision R sees every write at or below R. Reads run in
autocommit, one statement each (see sqlcommon), on pooled connections.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from policyd.errors import AlreadyExistsError, InvalidRequestError, StoreError
from policyd.store.base import Clock
from policyd.store.postgres.migrations import SECONDARY_INDEXES, migrate
from policyd.store.sqlcommon import ROW_COLUMNS, SqlCursor, SqlStore

# ASCII only, at most PostgreSQL's 63-byte identifier limit: the name also goes into a
# ``search_path`` option, where anything else would need quoting rules of its own.
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_]{1,63}")


class PostgresStore(SqlStore):
    """The scale-out backend: relationships, policy and change log in PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        *,
        schema_name: str = "public",
        clock: Clock = time.time,
        min_connections: int = 1,
        max_connections: int = 10,
        timeout: float = 30.0,
    ) -> None:
        """Connect to ``dsn`` and migrate the tables in ``schema_name``.

        Args:
            dsn: a libpq connection string or ``postgresql://`` URL.
            schema_name: the PostgreSQL schema holding policyd's tables (created
                if missing), so several stores can share one database.
            clock: the time source for expiry, holds and GC.
            min_connections: connections the pool keeps open.
            max_connections: connections the pool opens at most.
            timeout: seconds to wait for a pooled connection.
        """
        super().__init__(clock)
        if not _SCHEMA_NAME.fullmatch(schema_name):
            raise InvalidRequestError(f"invalid schema name {schema_name!r}", field="schema")
        self._schema_name = schema_name
        self._dsn = dsn
        self._sql_cache: dict[str, str] = {}
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                migrate(conn, schema_name)
            self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
                dsn,
                min_size=min_connections,
                max_size=max_connections,
                timeout=timeout,
                kwargs={"autocommit": True, "options": f"-c search_path={schema_name}"},
                open=True,
            )
        except psycopg.Error as e:
            raise StoreError(f"cannot open PostgreSQL store: {e}") from e
        self._load_identity()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self._schema_name!r})"

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreError(f"no PostgreSQL connection available: {e}") from e
        except psycopg.errors.UniqueViolation as e:
            raise AlreadyExistsError(f"relationship already exists: {e}") from e
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL failed: {e}") from e

    @contextlib.contextmanager
    def _read(self) -> Iterator[SqlCursor]:
        with self._connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[SqlCursor]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _sql(self, text: str) -> str:
        cached = self._sql_cache.get(text)
        if cached is None:
            if len(self._sql_cache) > 1000:
                self._sql_cache.clear()
            cached = self._sql_cache[text] = text.replace("?", "%s")
        return cached

    def _in_ids(self, column: str, ids: Collection[str]) -> tuple[str, Any]:
        return f"{column} = ANY(?)", list(ids)

    def _context_keys_from(self) -> str:
        return (
            "relationships CROSS JOIN LATERAL "
            "json_object_keys(relationships.caveat_context::json) AS k(key)"
        )

    def _lock_state_sql(self) -> str:
        return "SELECT head, oldest FROM store_state FOR UPDATE"

    def _bulk_insert(self, cur: SqlCursor, rows: Iterable[tuple[Any, ...]], empty: bool) -> None:
        if not isinstance(cur, psycopg.Connection):
            raise TypeError("PostgresStore writes on psycopg connections")
        if empty:
            for name in SECONDARY_INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {name}".encode())
        try:
            with (
                cur.cursor() as c,
                c.copy(f"COPY relationships ({ROW_COLUMNS}) FROM STDIN".encode()) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation as e:
            raise AlreadyExistsError(
                f"an imported relationship is repeated in the input: {e.diag.message_detail}",
                field="relationships",
            ) from e
        if empty:
            for ddl in SECONDARY_INDEXES.values():
                cur.execute(ddl.encode())

    def _many(self, cur: SqlCursor, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if not isinstance(cur, psycopg.Connection):
            raise TypeError("PostgresStore writes on psycopg connections")
        with cur.cursor() as c:
            c.executemany(text.encode(), rows)

    def opener(self) -> Callable[[], PostgresStore]:
        """Connects to the same database and schema again."""
        return functools.partial(
            PostgresStore, self._dsn, schema_name=self._schema_name, clock=self.clock
        )

    def drop(self) -> None:
        """Drop this store's PostgreSQL schema and everything in it (tests use it to clean up)."""
        with self._connection() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self._schema_name}" CASCADE'.encode())

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()
