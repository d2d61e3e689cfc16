"""PostgreSQL writers on several servers: a bulk import holds no other write; commits notify."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from policyd.errors import AlreadyExistsError
from policyd.relationship import Relationship
from policyd.store.base import ChangeKind, ChangeNotifier
from policyd.store.postgres import PostgresStore
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
