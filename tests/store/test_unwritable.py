"""A SQLite store that cannot be written (a full disk, a read-only filesystem) still serves reads.

Start-up needs no write, a write fails StoreUnwritableError (UNAVAILABLE over
gRPC), and writes resume once the disk can take them, with no restart.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from policyd.errors import StoreUnwritableError
from policyd.store.sqlite import SqliteStore
from policyd.store.sqlite.migrations import pending
from tests.store.disks import fill, set_read_only, small_disk
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import everything, touch


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A small disk holding a store with one relationship, closed cleanly (no -wal, no -shm)."""
    with small_disk(tmp_path / "disk") as path:
        store = SqliteStore(path / "policyd.db")
        store.write_policy(POLICY_TEXT, base_schema())
        store.write(touch("document:1#viewer@user:a"))
        store.close()
        assert sorted(p.name for p in path.iterdir()) == ["policyd.db"]
        yield path


def in_thread(store: SqliteStore) -> list[str]:
    """Everything, read by a thread of its own (so through a connection of its own)."""
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(everything(store)))
    reader.start()
    reader.join()
    return seen


def test_a_full_disk_opens_read_only_and_writes_resume_once_space_is_freed(disk: Path) -> None:
    filler = fill(disk)
    store = SqliteStore(disk / "policyd.db")
    try:
        assert everything(store) == ["document:1#viewer@user:a"]
        with pytest.raises(StoreUnwritableError):
            store.write(touch("document:2#viewer@user:b"))
        with pytest.raises(StoreUnwritableError):
            store.write(touch("document:2#viewer@user:b"))  # still full: still refused
        filler.unlink()
        store.write(touch("document:2#viewer@user:b"))
        expected = ["document:1#viewer@user:a", "document:2#viewer@user:b"]
        assert everything(store) == expected
        assert in_thread(store) == expected
    finally:
        store.close()


def test_a_disk_that_fills_while_open_refuses_writes_and_keeps_reading(disk: Path) -> None:
    store = SqliteStore(disk / "policyd.db")
    try:
        store.write(touch("document:2#viewer@user:b"))
        filler = fill(disk)
        with pytest.raises(StoreUnwritableError):
            store.write(touch(*(f"document:{i}#viewer@user:{'x' * 200}" for i in range(3, 2000))))
        assert len(in_thread(store)) == 2
        filler.unlink()
        store.write(touch("document:3#viewer@user:c"))
        assert len(everything(store)) == 3
    finally:
        store.close()


def test_a_read_only_filesystem_serves_reads_and_writes_resume_when_it_is_writable(
    disk: Path,
) -> None:
    set_read_only(disk, True)
    try:
        store = SqliteStore(disk / "policyd.db")
        assert everything(store) == ["document:1#viewer@user:a"]
        with pytest.raises(StoreUnwritableError):
            store.write(touch("document:2#viewer@user:b"))
    finally:
        set_read_only(disk, False)
    try:
        store.write(touch("document:2#viewer@user:b"))
        assert len(in_thread(store)) == 2
    finally:
        store.close()


def test_opening_an_up_to_date_store_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "policyd.db"
    SqliteStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    assert not pending(other)
    other.execute("BEGIN IMMEDIATE")  # another process's write holds the lock meanwhile
    try:
        opened = SqliteStore(path, busy_timeout=timedelta(0))  # a write would fail at once
        assert opened.head_revision() == 0
        opened.close()
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.postgres
def test_an_up_to_date_postgres_store_opens_in_a_read_only_session(pg_dsn: str) -> None:
    from policyd.store.postgres import PostgresStore

    schema_name = f"ro_{uuid.uuid4().hex[:12]}"
    writable = PostgresStore(pg_dsn, schema_name=schema_name)
    writable.write_policy(POLICY_TEXT, base_schema())
    writable.write(touch("document:1#viewer@user:a"))
    sep = "&" if "?" in pg_dsn else "?"
    read_only_dsn = f"{pg_dsn}{sep}options=-c%20default_transaction_read_only%3Don"
    try:
        store = PostgresStore(read_only_dsn, schema_name=schema_name)
        assert everything(store) == ["document:1#viewer@user:a"]
        store.close()
    finally:
        writable.drop()
        writable.close()
