"""Package store.sqlite.store holds SqliteStore: the Store contract on one SQLite file.

A file is opened in WAL mode with a busy timeout and one connection per
thread, so readers never block the writer and several processes can share the
file; writers serialise on ``BEGIN IMMEDIATE``. ``:memory:`` has one
connection guarded by a lock (a second connection would see another database).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from policyd.errors import AlreadyExistsError, InvalidRequestError, StoreError
from policyd.store.base import Clock
from policyd.store.sqlcommon import INSERT, Row, SqlCursor, SqlStore
from policyd.store.sqlite.migrations import SECONDARY_INDEXES, migrate

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
PAGE_SIZE = 16384
BULK_CACHE_KIB = 512 * 1024


class SqliteStore(SqlStore):
    """The default backend: relationships, policy and change log in one SQLite database."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        clock: Clock = time.time,
        synchronous: str = "FULL",
        busy_timeout: timedelta = timedelta(seconds=30),
        cache_size_kib: int = 65536,
    ) -> None:
        """Open (creating and migrating if needed) the database at ``path``.

        Args:
            path: a file path, or ``":memory:"`` for a private in-memory database.
            clock: the time source for expiry, holds and GC.
            synchronous: SQLite's ``PRAGMA synchronous``; FULL (the default) makes
                every acknowledged write survive power loss, NORMAL only a crash.
            busy_timeout: how long a writer waits for another process's write lock.
            cache_size_kib: page cache per connection.
        """
        super().__init__(clock)
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise InvalidRequestError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        self._path = str(path)
        self._settings: dict[str, Any] = {
            "clock": clock,
            "synchronous": synchronous,
            "busy_timeout": busy_timeout,
            "cache_size_kib": cache_size_kib,
        }
        self._memory = self._path == ":memory:"
        self._cache_size_kib = int(cache_size_kib)
        self._pragmas = (
            # Only a new file takes it (before WAL is on): 16 KiB pages hold more of our long
            # keys per page, and bulk loads run about 25% faster (benchmarks/store_bench.py).
            f"PRAGMA page_size = {PAGE_SIZE}",
            f"PRAGMA busy_timeout = {int(busy_timeout.total_seconds() * 1000)}",
            f"PRAGMA synchronous = {synchronous.upper()}",
            f"PRAGMA cache_size = -{self._cache_size_kib}",
        )
        self._local = threading.local()
        self._lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        try:
            migrate(self._connection())
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {self._path}: {e}") from e
        self._load_identity()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # ---- connections ---------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._memory and self._connections:
                conn = self._connections[0]
            else:
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, cached_statements=512
                )
                for pragma in self._pragmas:
                    conn.execute(pragma)
                if not self._memory:
                    conn.execute("PRAGMA journal_mode = WAL")
                self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[SqlCursor]:
        conn = self._connection()
        try:
            if self._memory:
                with self._lock:
                    yield conn
            else:
                yield conn
        except sqlite3.Error as e:
            raise StoreError(f"SQLite read failed: {e}") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[SqlCursor]:
        conn = self._connection()
        with self._lock if self._memory else contextlib.nullcontext():
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise StoreError(f"SQLite write failed: {e}") from e
                raise

    def _sql(self, text: str) -> str:
        return text

    def _in_ids(self, column: str, ids: Collection[str]) -> tuple[str, Any]:
        # One parameter whatever the number of ids: the statement stays cached.
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(ids))

    def _context_keys_from(self) -> str:
        return "relationships, json_each(relationships.caveat_context) AS k"

    def _bulk_insert(self, cur: SqlCursor, rows: Iterable[tuple[Any, ...]], empty: bool) -> None:
        conn = self._connection()
        if empty:
            for name in SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        # A large page cache and sorter threads for the load and the index builds
        # (benchmarks/store_bench.py, "import"); restored afterwards.
        conn.execute(f"PRAGMA cache_size = -{max(self._cache_size_kib, BULK_CACHE_KIB)}")
        conn.execute("PRAGMA threads = 2")
        try:
            conn.executemany(INSERT, rows)
            if empty:
                for ddl in SECONDARY_INDEXES.values():
                    conn.execute(ddl)
        except sqlite3.IntegrityError as e:
            raise AlreadyExistsError(
                f"an imported relationship is repeated in the input: {e}", field="relationships"
            ) from e
        finally:
            conn.execute(f"PRAGMA cache_size = -{self._cache_size_kib}")
            conn.execute("PRAGMA threads = 0")

    # ---- hot path ------------------------------------------------------------------------------

    def _fetch_one(self, text: str, params: Sequence[Any]) -> Row:
        """The one row of a read statement: the point read of snapshot ``get``.

        Flattened (no context manager, one cached statement) for the point-read
        numbers of benchmarks/store_bench.py.
        """
        conn = getattr(self._local, "conn", None) or self._connection()
        try:
            if self._memory:
                with self._lock:
                    row: Row = conn.execute(text, params).fetchone()
            else:
                row = conn.execute(text, params).fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"SQLite read failed: {e}") from e
        return row

    def opener(self) -> Callable[[], SqliteStore] | None:
        """Opens this file again with the same settings; None for ``:memory:``."""
        if self._memory:
            return None
        return functools.partial(SqliteStore, self._path, **self._settings)

    def close(self) -> None:
        """Close every connection this store opened, in any thread."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
            self._local = threading.local()
