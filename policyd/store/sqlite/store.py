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
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from policyd.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    StoreError,
    StoreUnwritableError,
)
from policyd.relationship import Relationship
from policyd.store.base import Clock, Revision
from policyd.store.sqlcommon import INSERT, Row, SqlCursor, SqlStore, row_values
from policyd.store.sqlite.migrations import SECONDARY_INDEXES, migrate

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
REOPEN_SECONDS = 1.0
"""How often a read-only connection (opened when the file could not be written) tries a
normal open again; it also tries as soon as another process initialised the WAL index."""
WAL_INDEX_BYTES = 32768
"""The size of an initialised ``-shm`` file (the WAL index), one 32 KiB region."""
_CANNOT_WRITE = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")

LOG = logging.getLogger("policyd.store")


def _cannot_write(error: sqlite3.Error) -> bool:
    """A full disk, a read-only file or directory, or an I/O error writing beside the file."""
    return str(getattr(error, "sqlite_errorname", "")).startswith(_CANNOT_WRITE)


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
        self._retry_at = 0.0
        try:
            migrate(self._connection())
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {self._path}: {e}") from e
        self._load_identity()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # ---- connections ---------------------------------------------------------------------------

    def _connection(self, *, writing: bool = False) -> sqlite3.Connection:
        """The calling thread's connection; a read-only one when the file cannot be written.

        A thread holding a read-only connection tries a normal open again for
        every write, and for reads as ``_may_reopen`` says.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        read_only: sqlite3.Connection | None = getattr(self._local, "read_only", None)
        if read_only is not None and not writing and not self._may_reopen():
            return read_only
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._memory and self._connections:
                conn = self._connections[0]
            else:
                try:
                    conn = self._open()
                except sqlite3.Error as e:
                    if not _cannot_write(e):
                        raise StoreError(f"cannot open SQLite store {self._path}: {e}") from e
                    self._retry_at = time.monotonic() + REOPEN_SECONDS
                    if read_only is None:
                        read_only = self._open_read_only(e)
                        self._connections.append(read_only)
                        self._local.read_only = read_only
                    return read_only
                self._connections.append(conn)
            if read_only is not None:
                self._local.read_only = None
                self._connections.remove(read_only)
                read_only.close()
        self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        try:
            for pragma in self._pragmas:
                conn.execute(pragma)
            if not self._memory:
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _open_read_only(self, cause: sqlite3.Error) -> sqlite3.Connection:
        """A connection that reads the file without creating or growing anything beside it.

        On a full disk a WAL database whose ``-shm`` file is gone (the last
        process to close it removed it) cannot be opened even to read: the
        shared-memory file must be created. Then, if there is no WAL content,
        the file alone holds every committed write, and nothing can change it
        until someone opens it normally, which needs that same free space: so
        it is read as immutable, and each use after ``REOPEN_SECONDS``, or
        once another process made the ``-shm`` file, tries a normal open again.
        """
        wal = Path(f"{self._path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"cannot open SQLite store {self._path}: {cause}") from cause
        uri = f"file:{pathname2url(os.path.abspath(self._path))}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA cache_size = -{self._cache_size_kib}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {self._path}: {e}") from e
        LOG.warning("SQLite store %s opened read-only: %s", self._path, cause)
        return conn

    def _may_reopen(self) -> bool:
        """Whether a read-only connection should try a normal open again now."""
        if time.monotonic() >= self._retry_at:
            return True
        try:
            return os.stat(f"{self._path}-shm").st_size >= WAL_INDEX_BYTES
        except OSError:
            return False

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Close this thread's connection that cannot write, so its next use opens a fresh one."""
        with self._lock:
            self._local.conn = None
            if conn in self._connections:
                self._connections.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

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
        conn = self._connection(writing=True)
        with self._lock if self._memory else contextlib.nullcontext():
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if not isinstance(e, sqlite3.Error):
                    raise
                if not _cannot_write(e) or self._memory:
                    raise StoreError(f"SQLite write failed: {e}") from e
                # A connection opened read-only stays so: the next write opens a new one,
                # so writes resume as soon as the file can take them again.
                if conn is getattr(self._local, "conn", None):
                    self._drop(conn)
                raise StoreUnwritableError(
                    f"SQLite store {self._path} cannot take writes: {e}"
                ) from e

    def _sql(self, text: str) -> str:
        return text

    def _in_ids(self, column: str, ids: Collection[str]) -> tuple[str, Any]:
        # One parameter whatever the number of ids: the statement stays cached.
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(ids))

    def _context_keys_from(self) -> str:
        return "relationships, json_each(relationships.caveat_context) AS k"

    def _import_in(self, cur: SqlCursor, relationships: Iterable[Relationship]) -> Revision:
        # BEGIN IMMEDIATE already holds SQLite's one write lock: nothing to gain by staging.
        revision, validator = self._begin(cur)
        now = self._now()
        empty = not self._exec(cur, "SELECT EXISTS (SELECT 1 FROM relationships)").fetchone()[0]
        check = validator.check

        def rows() -> Iterator[tuple[Any, ...]]:
            for i, rel in enumerate(relationships):
                check(rel, f"relationships[{i}]")
                yield row_values(rel, revision)

        self._bulk_insert(rows(), empty)
        if not empty:
            self._finish_import(cur, revision, now)
        return revision

    def _bulk_insert(self, rows: Iterable[tuple[Any, ...]], empty: bool) -> None:
        conn = self._connection()
        if empty:
            for name in SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        # A large page cache and sorter threads for a load into an empty store and
        # its index builds (benchmarks/store_bench.py, "import"); restored
        # afterwards. Not for an import into a serving store: its memory would
        # stay with the process (policyd bench --sections grpc-writes, import).
        if empty:
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
        """The one row of a read statement: the point read of snapshot ``get``, and its policy.

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
