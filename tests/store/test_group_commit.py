"""The writer process (store.group_commit): concurrent requests, one commit, each answered alone."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from policyd.errors import AlreadyExistsError, InvalidRelationshipError, StoreError
from policyd.store.base import GroupRequest, Revision, Store, WriteRequest
from policyd.store.group_commit import InlineWriter, WriterProcess, writer_for
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.store.recording import RecordingStore
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import create, everything, touch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite file with the base policy; the writer process can import ``tests``."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    path = tmp_path / "policyd.db"
    store = SqliteStore(path)
    store.write_policy(POLICY_TEXT, base_schema())
    store.close()
    return path


def requests(n: int) -> list[GroupRequest]:
    """``n`` writes; every fifth CREATEs document:0#viewer@user:x again, which fails."""
    return [
        WriteRequest(tuple(create("document:0#viewer@user:x")))
        if i % 5 == 4
        else WriteRequest(tuple(touch(f"document:{i}#viewer@user:a", f"document:{i}#owner@user:a")))
        for i in range(n)
    ]


async def apply_all(
    writer: WriterProcess | InlineWriter, batch: list[GroupRequest]
) -> list[Revision | tuple[Revision, int] | BaseException]:
    await writer.start()
    try:
        return await asyncio.gather(*(writer.apply(r) for r in batch), return_exceptions=True)
    finally:
        await writer.close()


def test_concurrent_requests_commit_together_and_each_is_answered_alone(db: Path) -> None:
    log = db.parent / "groups.txt"
    store = SqliteStore(db)
    head = store.head_revision()
    store.write(create("document:0#viewer@user:x"))
    writer = WriterProcess(functools.partial(RecordingStore, db, log))
    outcomes = asyncio.run(apply_all(writer, requests(50)))
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    assert failed == list(range(4, 50, 5))
    assert all(isinstance(outcomes[i], AlreadyExistsError) for i in failed)
    # Revisions follow the order the requests were sent in; a failed one takes none.
    assert [o for o in outcomes if not isinstance(o, BaseException)] == list(
        range(head + 2, head + 2 + 40)
    )
    assert [int(n) for n in log.read_text().split()] == [50]  # sent in one turn: one commit
    assert len(everything(store)) == 1 + 2 * 40
    per_revision = Counter(e.revision for e in store.changes(head + 1, limit=10_000))
    assert set(per_revision.values()) == {2}  # each request is a revision of its own
    store.close()


def test_a_store_failure_fails_its_group_and_the_writer_goes_on(db: Path) -> None:
    log = db.parent / "groups.txt"
    writer = WriterProcess(functools.partial(RecordingStore, db, log, fail_first=True))
    first, second = asyncio.run(
        _twice(writer, WriteRequest(tuple(touch("document:1#viewer@user:a"))))
    )
    assert isinstance(first, StoreError)
    assert isinstance(second, int)
    store = SqliteStore(db)
    assert everything(store) == ["document:1#viewer@user:a"]
    store.close()


async def _twice(
    writer: WriterProcess, request: GroupRequest
) -> tuple[Revision | tuple[Revision, int] | BaseException, ...]:
    await writer.start()
    try:
        first = await asyncio.gather(writer.apply(request), return_exceptions=True)
        second = await asyncio.gather(writer.apply(request), return_exceptions=True)
        return (first[0], second[0])
    finally:
        await writer.close()


def test_a_writer_that_dies_fails_what_it_held_and_is_started_again(db: Path) -> None:
    async def run() -> tuple[object, object]:
        writer = WriterProcess(
            functools.partial(RecordingStore, db, db.parent / "g.txt", hang=True)
        )
        await writer.start()
        try:
            waiting = asyncio.ensure_future(
                writer.apply(WriteRequest(tuple(touch("document:1#viewer@user:a"))))
            )
            pid = await asyncio.to_thread(_wait_for_hang, db.parent / "g.txt")
            os.kill(pid, signal.SIGKILL)
            lost = (await asyncio.gather(waiting, return_exceptions=True))[0]
            again = await writer.apply(WriteRequest(tuple(touch("document:2#viewer@user:a"))))
            return lost, again
        finally:
            await writer.close()

    lost, again = asyncio.run(run())
    assert isinstance(lost, StoreError)
    assert isinstance(again, int)
    store = SqliteStore(db)
    assert everything(store) == ["document:2#viewer@user:a"]  # the killed group never committed
    store.close()


def _wait_for_hang(log: Path) -> int:
    import time

    for _ in range(6000):
        if log.exists() and log.read_text().startswith("hang "):
            return int(log.read_text().split()[1])
        time.sleep(0.01)
    raise AssertionError("the writer never started its group")


def test_a_store_no_other_process_can_open_gets_a_writer_thread() -> None:
    store = MemoryStore()
    store.write_policy(POLICY_TEXT, base_schema())
    writer = writer_for(store)
    assert isinstance(writer, InlineWriter)
    outcomes = asyncio.run(
        apply_all(writer, [*requests(3), WriteRequest(tuple(touch("document:1#nonsense@user:a")))])
    )
    assert outcomes[:3] == [2, 3, 4]
    assert isinstance(outcomes[3], InvalidRelationshipError)
    assert isinstance(writer_for(SqliteStore(":memory:")), InlineWriter)


def test_a_file_store_gets_a_writer_process(db: Path) -> None:
    store: Store = SqliteStore(db)
    assert isinstance(writer_for(store), WriterProcess)
    store.close()
