"""PostgreSQL writers on several servers: a bulk import holds no other write; commits notify."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from policyd.errors import AlreadyExistsError
from policyd.relationship import Relationship
from policyd.store.base import ChangeKind, ChangeNotifier
from policyd.store.postgres import PostgresStore
from policyd.store.postgres import store as postgres_store
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import create, everything, rel, touch

pytestmark = pytest.mark.postgres

IMPORTED = 2_000
SINGLE_WRITES = 20


@pytest.fixture
def two_servers(pg_dsn: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one PostgreSQL schema, as two policyd servers would open it."""
    schema = f"w_{uuid.uuid4().hex[:12]}"
    first = PostgresStore(pg_dsn, schema_name=schema)
    first.write_policy(POLICY_TEXT, base_schema())
    second = PostgresStore(pg_dsn, schema_name=schema)
    yield first, second
    second.close()
    first.drop()
    first.close()


def test_single_writes_commit_while_a_bulk_import_streams_in(
    two_servers: tuple[PostgresStore, PostgresStore],
) -> None:
    importer, writer = two_servers
    halfway, release = threading.Event(), threading.Event()

    def rows() -> Iterator[Relationship]:
        for i in range(IMPORTED):
            if i == IMPORTED // 2:
                halfway.set()
                # The import's input stalls here until every single write committed: with
                # the revision lock taken before the input, they would wait on it instead
                # (and fail at lock_timeout), and this wait would end only by timing out.
                assert release.wait(60), "the single writes did not get through"
            yield rel(f"document:bulk{i}#viewer@user:u{i}")

    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(importer.import_relationships(rows())))
    thread.start()
    try:
        assert halfway.wait(60)
        written = [
            writer.write(touch(f"document:single#viewer@user:s{j}")) for j in range(SINGLE_WRITES)
        ]
    finally:
        release.set()
        thread.join(120)
    assert len(outcome) == 1, outcome
    imported = outcome[0]
    assert isinstance(imported, int)

    # Revisions keep commit order: each single write its own, the import after them all
    # (at the revision it reserved: revisions increase, but an import leaves a gap).
    assert written == list(range(written[0], written[0] + SINGLE_WRITES))
    assert imported > written[-1]
    assert importer.head_revision() == writer.head_revision() == imported
    # A reader at the last single write sees those writes and none of the import.
    before = everything(writer, written[-1])
    assert len(before) == SINGLE_WRITES
    assert all("single" in r for r in before)
    assert len(everything(writer)) == SINGLE_WRITES + IMPORTED
    by_revision: dict[int, int] = {}
    for event in writer.changes(written[0] - 1, limit=100_000):
        assert event.kind is ChangeKind.TOUCH
        by_revision[event.revision] = by_revision.get(event.revision, 0) + 1
    assert by_revision == {**dict.fromkeys(written, 1), imported: IMPORTED}


def test_a_commit_on_one_server_notifies_listeners_on_another(
    two_servers: tuple[PostgresStore, PostgresStore],
) -> None:
    writer, follower = two_servers
    assert isinstance(follower, ChangeNotifier)
    assert not follower.wait_for_change(0.05)  # subscribes; nothing committed since
    writer.write(touch("document:1#viewer@user:alice"))
    assert follower.wait_for_change(30)
    assert not follower.wait_for_change(0.05)  # one commit, one notification
    with pytest.raises(AlreadyExistsError):
        writer.write(create("document:1#viewer@user:alice"))  # rolled back: no notification
    assert not follower.wait_for_change(0.05)


def _writes_during_the_unlocked_check(
    monkeypatch: pytest.MonkeyPatch, importer: PostgresStore, writes: Callable[[], object]
) -> None:
    """Run ``writes`` (on another store) while the import checks clashes, before it publishes."""
    check = importer._refuse_staged_clashes
    done: list[bool] = []

    def check_then_write(cur: psycopg.Connection[tuple[Any, ...]], now: int) -> None:
        check(cur, now)
        if not done:
            done.append(True)
            writes()

    monkeypatch.setattr(importer, "_refuse_staged_clashes", check_then_write)


def test_an_import_whose_reservation_the_head_passed_moves_up_and_publishes(
    two_servers: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    importer, writer = two_servers
    writer.write(touch("document:0#viewer@user:zero"))
    monkeypatch.setattr(postgres_store, "IMPORT_RESERVE", 1)  # the next revision, no slack
    written: list[int] = []
    _writes_during_the_unlocked_check(
        monkeypatch,
        importer,
        lambda: written.extend(
            writer.write(touch(f"document:w#viewer@user:w{i}")) for i in range(3)
        ),
    )
    imported = importer.import_relationships([rel("document:i#viewer@user:imp")])
    assert imported > written[-1]
    assert writer.head_revision() == imported
    assert "document:i#viewer@user:imp" not in everything(writer, written[-1])
    assert "document:i#viewer@user:imp" in everything(writer, imported)
    assert [(e.revision, str(e.relationship)) for e in writer.changes(written[0] - 1)] == [
        *((r, f"document:w#viewer@user:w{i}") for i, r in enumerate(written)),
        (imported, "document:i#viewer@user:imp"),
    ]


def test_a_clash_committed_while_an_import_loads_is_refused(
    two_servers: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    importer, writer = two_servers
    writer.write(touch("document:0#viewer@user:zero"))
    _writes_during_the_unlocked_check(
        monkeypatch, importer, lambda: writer.write(create("document:i#viewer@user:imp"))
    )
    head = writer.head_revision()
    with pytest.raises(AlreadyExistsError, match="already exists"):
        importer.import_relationships([rel("document:i#viewer@user:imp")])
    assert writer.head_revision() == head + 1  # the clashing write's; the import left nothing
    assert everything(writer).count("document:i#viewer@user:imp") == 1
