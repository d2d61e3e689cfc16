"""Revisions: a following engine applies other writers' changes off the request path.

Two engines share one SQLite file, as two servers would: the writer and the
follower. Waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.errors import SnapshotMovedError
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate, SubjectRef
from policyd.store.sqlite import SqliteStore
from tests.engine.queries import rel

POLICY = """
definition user {}
definition doc {
    relation viewer: user
    permission view = viewer
}
"""
DOC = ObjectRef("doc", "1")
ANN = SubjectRef("user", "ann")


def eventually(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` for a bounded while; True as soon as it holds."""
    for _ in range(200):
        if condition():
            return True
        time.sleep(0.025)
    return False


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """A writer engine and a following engine on one SQLite file."""
    path = tmp_path / "shared.db"
    writer_store, follower_store = SqliteStore(path), SqliteStore(path)
    writer = Engine(writer_store)
    writer.write_policy(POLICY)
    follower = Engine(follower_store)
    yield writer, follower
    follower.close()
    writer_store.close()
    follower_store.close()


def grant(engine: Engine, text: str = "doc:1#viewer@user:ann") -> str:
    return engine.write([RelationshipUpdate(Operation.TOUCH, rel(text))])


def view(engine: Engine, consistency: Consistency | None = None) -> Permissionship:
    return engine.check(DOC, "view", ANN, consistency=consistency).permissionship


def test_a_follower_applies_another_writers_change_in_the_background(
    pair: tuple[Engine, Engine],
) -> None:
    writer, follower = pair
    follower.follow(0.01)
    grant(writer)
    assert eventually(lambda: view(follower) is Permissionship.HAS_PERMISSION)


def test_a_fresher_request_reads_the_store_rather_than_wait_for_the_follower(
    pair: tuple[Engine, Engine],
) -> None:
    writer, follower = pair
    follower.follow(3600)  # effectively never on its own
    token = grant(writer)
    assert view(follower) is Permissionship.NO_PERMISSION  # the index has not applied it
    fresh = Consistency.at_least_as_fresh(token)
    assert view(follower, fresh) is Permissionship.HAS_PERMISSION
    assert view(follower, Consistency.fully_consistent()) is Permissionship.HAS_PERMISSION


def test_a_follower_behind_collected_history_reloads_instead_of_failing(
    pair: tuple[Engine, Engine],
) -> None:
    writer, follower = pair
    follower.follow(3600)
    grant(writer)
    writer.write([RelationshipUpdate(Operation.DELETE, rel("doc:1#viewer@user:ann"))])
    grant(writer, "doc:1#viewer@user:bob")
    grant(writer)
    writer.store.gc(timedelta(0))
    # A fresh read finds the index behind and wakes the follower, which finds the log gone.
    assert view(follower, Consistency.fully_consistent()) is Permissionship.HAS_PERMISSION
    assert eventually(lambda: view(follower) is Permissionship.HAS_PERMISSION)
    assert follower.healthy


def test_a_check_that_meets_the_index_mid_change_reads_the_store(
    pair: tuple[Engine, Engine],
) -> None:
    _, follower = pair
    index = follower._index
    assert index is not None
    with index.applying():
        # Half of a change applied: the index says what no committed revision said yet.
        index.add(rel("doc:1#viewer@user:ann"))
        assert view(follower) is Permissionship.NO_PERMISSION  # read from the store instead
    assert view(follower) is Permissionship.HAS_PERMISSION  # once applied, the index serves


def test_a_lookup_the_index_moves_under_stops_instead_of_mixing_revisions(
    pair: tuple[Engine, Engine],
) -> None:
    writer, follower = pair
    for i in range(5):
        grant(writer, f"doc:1#viewer@user:u{i}")
    view(follower, Consistency.fully_consistent())
    listing = follower.stream_subjects(DOC, "view", "user")
    steps = iter(listing.steps)
    next(steps)
    grant(writer, "doc:1#viewer@user:zed")
    view(follower, Consistency.fully_consistent())  # the index applies the new revision
    with pytest.raises(SnapshotMovedError, match="resume from the last answer's cursor"):
        list(steps)


def test_a_check_that_meets_a_reload_after_gc_reads_the_store_head(
    pair: tuple[Engine, Engine],
) -> None:
    writer, follower = pair
    index = follower._index
    assert index is not None
    assert index.revision == 1
    grant(writer)
    grant(writer, "doc:1#viewer@user:bob")
    writer.store.gc(timedelta(0))  # revision 1, where the index stands, is collected
    with index.applying():
        # The index is being reloaded; its revision is gone from the store, so the
        # store answers at its head (a minimize-latency request may read newer).
        result = follower.check(DOC, "view", ANN)
    assert result.permissionship is Permissionship.HAS_PERMISSION
    assert follower.tokens.revision(result.token) == 3


def test_an_embedded_engine_behind_collected_history_reloads(
    pair: tuple[Engine, Engine],
) -> None:
    writer, embedded = pair  # no follower thread: it catches up on requests
    grant(writer)
    writer.write([RelationshipUpdate(Operation.DELETE, rel("doc:1#viewer@user:ann"))])
    grant(writer)
    writer.store.gc(timedelta(0))
    assert view(embedded, Consistency.fully_consistent()) is Permissionship.HAS_PERMISSION
    assert view(embedded) is Permissionship.HAS_PERMISSION
