"""Index snapshots: a restart loads one and replays the log; one that does not match is rebuilt.

Each case starts a real engine on a SQLite file with a snapshot path, changes
something (the store, the file), restarts, and checks the answers against the
store and the log line that says what happened.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.engine.snapshot import SnapshotUnusableError, read_snapshot
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_relationship,
)
from policyd.store.sqlite import SqliteStore

POLICY = """
definition user {}
definition group { relation member: user | group#member }
definition doc {
    relation owner: user
    relation viewer: user | group#member
    permission view = owner + viewer
}
"""
FRESH = Consistency.fully_consistent()


def rel(text: str) -> Relationship:
    return parse_relationship(text)


FIRST = [
    "doc:d1#owner@user:ann",
    "doc:d2#viewer@group:eng#member",
    "group:eng#member@group:core#member",
    "group:core#member@user:bob",
]
LATER = ["doc:d3#viewer@user:cat", "group:core#member@user:dan"]
QUESTIONS = [
    ("d1", "ann"),
    ("d2", "bob"),
    ("d2", "dan"),
    ("d3", "cat"),
    ("d2", "ann"),
    ("d1", "bob"),
]


def answers(engine: Engine) -> list[bool]:
    return [
        engine.check(ObjectRef("doc", d), "view", SubjectRef("user", u), consistency=FRESH).allowed
        for d, u in QUESTIONS
    ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "policyd.db"
    store = SqliteStore(path)
    engine = Engine(store)
    engine.write_policy(POLICY)
    engine.import_relationships([rel(r) for r in FIRST])
    store.close()
    return path


def start(db: Path, snapshot: Path) -> tuple[Engine, SqliteStore]:
    store = SqliteStore(db)
    return Engine(store, index_snapshot=snapshot), store


def write_later(engine: Engine) -> None:
    engine.write([RelationshipUpdate(Operation.TOUCH, rel(r)) for r in LATER])
    engine.write([RelationshipUpdate(Operation.DELETE, rel("doc:d1#owner@user:ann"))])


EXPECTED = [False, True, True, True, False, False]
"""The answers to QUESTIONS after ``write_later``."""


def test_a_restart_loads_the_snapshot_and_replays_the_log_since(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    assert snapshot.exists()  # built from the store, then saved
    saved_at = read_snapshot(snapshot, store.identity).revision
    write_later(engine)
    store.close()  # no close(): the snapshot stays at its revision, the log has the rest
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(db, snapshot)
    assert f"index loaded from {snapshot} at revision {saved_at}" in caplog.text
    assert answers(engine) == EXPECTED
    assert list(tmp_path.glob(".*.tmp")) == []
    engine.close()  # saves the moved index
    assert read_snapshot(snapshot, store.identity).revision == store.head_revision()
    store.close()


def test_closing_saves_changes_and_a_restart_serves_them(db: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    write_later(engine)
    engine.close()
    store.close()
    loaded = read_snapshot(snapshot, SqliteStore(db).identity)
    assert loaded.revision > 0
    engine, store = start(db, snapshot)
    assert answers(engine) == EXPECTED
    store.close()


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_corrupt_snapshot_is_detected_and_rebuilt(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    write_later(engine)
    engine.close()
    store.close()
    flip_a_byte(snapshot)
    with pytest.raises(SnapshotUnusableError, match="checksum"):
        read_snapshot(snapshot, SqliteStore(db).identity)
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(db, snapshot)
    assert "not used: its checksum does not match: the file is corrupt" in caplog.text
    assert answers(engine) == EXPECTED
    read_snapshot(snapshot, store.identity)  # rewritten whole
    store.close()


def test_a_truncated_or_foreign_file_is_not_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "index.snapshot"
    path.write_bytes(b"policyd-index\n")
    with pytest.raises(SnapshotUnusableError, match="not an index snapshot"):
        read_snapshot(path, b"x")
    with pytest.raises(SnapshotUnusableError, match="cannot be read"):
        read_snapshot(tmp_path / "missing", b"x")


def test_another_stores_snapshot_is_detected_and_rebuilt(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = tmp_path / "index.snapshot"
    other = SqliteStore(tmp_path / "other.db")
    engine = Engine(other, index_snapshot=snapshot)
    engine.write_policy(POLICY)
    engine.import_relationships([rel("doc:d1#owner@user:bob"), rel("doc:d2#owner@user:ann")])
    engine.close()
    other.close()
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(db, snapshot)
    assert "not used: it is a snapshot of another store" in caplog.text
    write_later(engine)
    assert answers(engine) == EXPECTED
    assert read_snapshot(snapshot, store.identity).revision > 0
    store.close()


def test_a_snapshot_older_than_the_collected_log_is_rebuilt(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    write_later(engine)
    store.gc(timedelta(0))  # the log no longer reaches back to the snapshot's revision
    store.close()
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(db, snapshot)
    assert "the change log no longer reaches back to its revision" in caplog.text
    assert answers(engine) == EXPECTED
    store.close()


def snapshot_past_a_backup(db: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``db`` (the backup), then a snapshot saved after ``write_later`` on ``db``."""
    backup = tmp_path / "backup.db"
    shutil.copy(db, backup)
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    write_later(engine)
    engine.close()
    store.close()
    return backup, snapshot


def test_a_snapshot_newer_than_the_store_is_rebuilt(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup, snapshot = snapshot_past_a_backup(db, tmp_path)
    # The store comes back from the copy taken before the writes: same identity, older head.
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(backup, snapshot)
    assert "is above the store's head" in caplog.text
    assert answers(engine) == [True, True, False, False, False, False]
    store.close()


def test_a_restored_store_written_past_the_snapshot_is_detected_and_rebuilt(
    db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup, snapshot = snapshot_past_a_backup(db, tmp_path)
    saved_at = read_snapshot(snapshot, SqliteStore(db).identity).revision
    # The copy taken before those writes comes back and takes other writes, to the same
    # revision numbers and past them: same identity, a head not below the snapshot's.
    restored = SqliteStore(backup)
    other = Engine(restored)
    while restored.head_revision() <= saved_at:
        n = restored.head_revision()
        other.write([RelationshipUpdate(Operation.TOUCH, rel(f"doc:r{n}#viewer@user:eve"))])
    restored.close()
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine, store = start(backup, snapshot)
    assert f"the store's revision {saved_at} is not the one it was saved at" in caplog.text
    assert answers(engine) == [True, True, False, False, False, False]  # the store's, not LATER's
    assert read_snapshot(snapshot, store.identity).revision == store.head_revision()
    store.close()


def test_a_failed_save_leaves_the_old_snapshot_whole(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = tmp_path / "index.snapshot"
    engine, store = start(db, snapshot)
    before = snapshot.read_bytes()
    write_later(engine)

    def full_disk(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with caplog.at_level(logging.INFO, "policyd.engine"):
        engine.close()  # the save fails: logged, and the old snapshot stays as it was
    assert f"saving the index snapshot to {snapshot} failed" in caplog.text
    assert snapshot.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    store.close()
