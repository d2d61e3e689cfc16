"""PostgreSQL writers on several servers: none holds another's write for its whole transaction."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from policyd.errors import AlreadyExistsError, InvalidRequestError
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import Relationship
from policyd.schema.ir import Permission, RelationRef, Schema
from policyd.store.base import ChangeKind, ChangeNotifier, WriteRequest
from policyd.store.postgres import PostgresStore
from policyd.store.postgres import store as postgres_store
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import create, delete, everything, exists, rel, touch

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

    # Each single write its own revision, in order, and the import after them all (at the
    # revision it reserved; revisions increase, numbered by transaction id, and skip).
    assert written == sorted(set(written))
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
    clashing: list[int] = []
    _writes_during_the_unlocked_check(
        monkeypatch,
        importer,
        lambda: clashing.append(writer.write(create("document:i#viewer@user:imp"))),
    )
    with pytest.raises(AlreadyExistsError, match="already exists"):
        importer.import_relationships([rel("document:i#viewer@user:imp")])
    assert writer.head_revision() == clashing[0]  # the clashing write's; the import left nothing
    assert everything(writer).count("document:i#viewer@user:imp") == 1


# ---- plain writes take their revision at commit ------------------------------------------------


def _in_background(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``call`` in a thread; its result or exception lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as e:  # handed to the test, which asserts on it
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


class _Paused:
    """A plain write held open inside its transaction, after it wrote, until finished."""

    def __init__(self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
        wrote, self._release = threading.Event(), threading.Event()
        apply = store._apply

        def apply_then_wait(*args: Any) -> None:
            apply(*args)
            wrote.set()
            assert self._release.wait(60), "the test never released the paused write"

        monkeypatch.setattr(store, "_apply", apply_then_wait)
        self._thread, self.outcome = _in_background(lambda: store.write(touch(text)))
        assert wrote.wait(60)

    def finish(self) -> object:
        """Let the write commit; its revision (or exception)."""
        self._release.set()
        self._thread.join(60)
        return self.outcome[0]


def _wait_for_an_advisory_lock_wait(dsn: str) -> None:
    """Return once some session waits for an advisory lock (a gate or a key's); fail after 60 s."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(6000):
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone() or (0,)
            if waiting:
                return
            threading.Event().wait(0.01)
    raise AssertionError("no session waited for an advisory lock")


def _behind_a_paused_write(
    paused: _Paused, dsn: str, call: Callable[[], object]
) -> tuple[object, object]:
    """Start ``call`` while ``paused`` is open, see it wait for a lock, then finish both.

    Returns the paused write's outcome and ``call``'s.
    """
    thread, outcome = _in_background(call)
    _wait_for_an_advisory_lock_wait(dsn)
    assert outcome == []
    first = paused.finish()
    thread.join(60)
    return first, outcome[0]


def test_a_write_commits_while_another_server_s_write_is_open(
    two_servers: tuple[PostgresStore, PostgresStore],
    monkeypatch: pytest.MonkeyPatch,
    pg_dsn: str,
) -> None:
    first, second = two_servers
    head = second.head_revision()
    paused = _Paused(first, monkeypatch, "document:a#viewer@user:a")
    # The first server's transaction is open and has written. The second server's write
    # commits meanwhile (with a row lock taken at a write's first statement it would wait
    # for the first, and fail at lock_timeout) ...
    thread, outcome = _in_background(lambda: second.write(touch("document:b#viewer@user:b")))
    _committed(pg_dsn, first, "b")
    # ... but is numbered after the first (a larger transaction id), so the head cannot
    # pass it, and it is not acknowledged, until the first one ends.
    assert second.head_revision() == head
    assert outcome == []
    # Nor does the change log show it: a reader (Watch, an index catching up) that moved
    # past it would never be shown the first write, committed later at a smaller revision.
    assert second.changes(head) == []
    opened_first = paused.finish()
    thread.join(60)
    (written,) = outcome
    assert isinstance(written, int)
    assert isinstance(opened_first, int)
    assert head < opened_first < written
    assert second.head_revision() == written
    assert "document:a#viewer@user:a" in everything(second, opened_first)
    assert "document:b#viewer@user:b" not in everything(second, opened_first)
    assert "document:b#viewer@user:b" in everything(second, written)
    changes = second.changes(head)
    assert [(e.revision, str(e.relationship)) for e in changes] == [
        (opened_first, "document:a#viewer@user:a"),
        (written, "document:b#viewer@user:b"),
    ]


def test_writes_to_one_key_from_two_servers_take_turns(
    two_servers: tuple[PostgresStore, PostgresStore],
    monkeypatch: pytest.MonkeyPatch,
    pg_dsn: str,
) -> None:
    first, second = two_servers
    paused = _Paused(first, monkeypatch, "document:k#viewer@user:k")
    # The second server's create reads the key's live row only once the first committed:
    # reading it earlier it would find none and store a second live copy.
    first_write, created = _behind_a_paused_write(
        paused, pg_dsn, lambda: second.write(create("document:k#viewer@user:k"))
    )
    assert isinstance(first_write, int)
    assert isinstance(created, AlreadyExistsError)
    touched = second.write(touch("document:k#viewer@user:k"))
    assert touched > first_write
    # The touch found the first server's row live and unchanged: one copy, no new event.
    assert everything(second).count("document:k#viewer@user:k") == 1
    kinds = [(e.revision, e.kind) for e in second.changes(first_write - 1)]
    assert kinds == [(first_write, ChangeKind.TOUCH)]


def test_a_precondition_waits_for_the_plain_writes_under_way(
    two_servers: tuple[PostgresStore, PostgresStore],
    monkeypatch: pytest.MonkeyPatch,
    pg_dsn: str,
) -> None:
    first, second = two_servers
    paused = _Paused(first, monkeypatch, "document:p#viewer@user:p")
    # A precondition reads more than its own keys, so it runs alone: it waits for the open
    # plain write and then sees its row (read beside it, the row would not be there yet).
    needs_p = Precondition.must_match(RelationshipFilter(resource_type="document", resource_id="p"))
    plain, conditional = _behind_a_paused_write(
        paused, pg_dsn, lambda: second.write(touch("document:q#viewer@user:q"), [needs_p])
    )
    assert isinstance(plain, int)
    assert isinstance(conditional, int)
    assert conditional > plain


def test_a_failed_request_in_a_group_of_plain_writes_takes_no_revision(
    two_servers: tuple[PostgresStore, PostgresStore],
) -> None:
    store, _ = two_servers
    store.write(touch("document:g#viewer@user:taken"))
    head = store.head_revision()
    outcomes = store.write_group(
        [
            WriteRequest(tuple(touch("document:g#viewer@user:one"))),
            WriteRequest(tuple(create("document:g#viewer@user:taken"))),
            WriteRequest(tuple(touch("document:g#viewer@user:two"))),
            WriteRequest(tuple(delete("document:g#viewer@user:one"))),
        ]
    )
    first = outcomes[0]
    assert isinstance(first, int)
    assert first > head
    assert isinstance(outcomes[1], AlreadyExistsError)
    assert outcomes[2:] == [first + 1, first + 2]
    assert exists(store, "document:g#viewer@user:one", first)
    assert not exists(store, "document:g#viewer@user:one", first + 2)
    assert exists(store, "document:g#viewer@user:two", first + 1)
    assert [(e.revision, e.kind) for e in store.changes(head)] == [
        (first, ChangeKind.TOUCH),
        (first + 1, ChangeKind.TOUCH),
        (first + 2, ChangeKind.DELETE),
    ]


def _without_owner() -> Schema:
    """base_schema with document's ``owner`` relation gone (and ``view`` from viewer alone)."""
    schema = base_schema()
    document = schema.definitions["document"]
    relations = {name: r for name, r in document.relations.items() if name != "owner"}
    view = Permission("view", RelationRef("viewer"))
    return dataclasses.replace(
        schema,
        definitions={
            **schema.definitions,
            "document": dataclasses.replace(
                document, relations=relations, permissions={"view": view}
            ),
        },
    )


def test_a_plain_write_waiting_out_a_policy_change_is_checked_against_the_new_policy(
    two_servers: tuple[PostgresStore, PostgresStore],
    monkeypatch: pytest.MonkeyPatch,
    pg_dsn: str,
) -> None:
    first, second = two_servers
    checked, release = threading.Event(), threading.Event()
    blockers = first._blockers

    def check_then_wait(*args: Any) -> list[str]:
        found = blockers(*args)
        checked.set()
        assert release.wait(60), "the test never released the policy change"
        return found

    monkeypatch.setattr(first, "_blockers", check_then_wait)
    policy_thread, policy_outcome = _in_background(
        lambda: first.write_policy(POLICY_TEXT, _without_owner())
    )
    assert checked.wait(60)
    # The policy change holds the write gate and found no owner rows to orphan. A plain
    # write of an owner row waits for the gate; once the change commits, the write must be
    # checked against the policy now in force, which has no owner relation.
    write_thread, write_outcome = _in_background(
        lambda: second.write(touch("document:x#owner@user:y"))
    )
    _wait_for_an_advisory_lock_wait(pg_dsn)
    release.set()
    policy_thread.join(60)
    write_thread.join(60)
    assert isinstance(policy_outcome[0], int)
    assert isinstance(write_outcome[0], InvalidRequestError), write_outcome
    assert "document:x#owner@user:y" not in everything(second)


def _committed(dsn: str, store: PostgresStore, resource_id: str) -> None:
    """Return once a row of ``resource_id`` is committed in ``store``'s schema; fail after 60 s."""
    options = f"-c search_path={store._schema_name}"
    with psycopg.connect(dsn, autocommit=True, options=options) as conn:
        for _ in range(6000):
            (found,) = conn.execute(
                "SELECT count(*) FROM relationships WHERE resource_id = %s", (resource_id,)
            ).fetchone() or (0,)
            if found:
                return
            threading.Event().wait(0.01)
    raise AssertionError(f"no row of {resource_id} committed")


def test_a_plain_write_commits_while_another_session_holds_store_state(
    two_servers: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    store, _ = two_servers
    head = store.head_revision()
    options = f"-c search_path={store._schema_name}"
    with psycopg.connect(pg_dsn, options=options) as holder:
        # The row every writer used to update (and hold to commit); GC holds it this way.
        holder.execute("SELECT head FROM store_state FOR UPDATE")
        thread, outcome = _in_background(lambda: store.write(touch("document:h#viewer@user:h")))
        _committed(pg_dsn, store, "h")
        # Committed without the row; only the head's move waits for it, and with it the ack.
        assert outcome == []
        holder.rollback()
    thread.join(60)
    (written,) = outcome
    assert isinstance(written, int)
    assert written > head
    assert store.head_revision() == written


def test_a_commit_whose_server_died_before_moving_the_head_is_picked_up_by_a_follower(
    two_servers: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, follower = two_servers
    head = follower.head_revision()
    # The writer's last message commits but moves no head, and it does not look again:
    # as if its process died between the two.
    monkeypatch.setattr(postgres_store, "ADVANCE_MESSAGE", "SELECT -1, %s, %s, %s")
    monkeypatch.setattr(writer, "_await_head", lambda *args: None)
    written = writer.write(touch("document:d#viewer@user:d"))
    assert written > head
    assert follower.head_revision() == head
    monkeypatch.undo()
    assert not follower.wait_for_change(0.05)  # quiet: it moves the head itself
    assert follower.head_revision() == written
    assert "document:d#viewer@user:d" in everything(follower, written)


def test_a_write_after_another_server_s_acknowledged_write_is_numbered_after_it(
    two_servers: tuple[PostgresStore, PostgresStore],
) -> None:
    # "New enemy": once one server acknowledged a write, a write any server starts after
    # it has a later revision, and a reader at the later one sees both. Revisions come
    # from transaction ids, and a transaction started later has the larger one.
    first, second = two_servers
    written: list[tuple[int, str]] = []
    for i in range(20):
        text = f"document:e{i}#viewer@user:u{i}"
        store, other = (first, second) if i % 2 else (second, first)
        written.append((store.write(touch(text)), text))
        revision = written[-1][0]
        assert other.head_revision() >= revision  # acknowledged: readable anywhere
        assert sorted(everything(other, revision)) == sorted(t for _, t in written)
    assert [r for r, _ in written] == sorted(r for r, _ in written)


def test_a_long_transaction_outside_the_store_does_not_hold_the_head(
    two_servers: tuple[PostgresStore, PostgresStore], pg_dsn: str
) -> None:
    # The head waits only for transactions holding this store's write gate, not for the
    # cluster's oldest transaction (a snapshot's xmin): a stranger's long transaction,
    # begun (and given an xid) before the write, does not delay it.
    store, _ = two_servers
    with psycopg.connect(pg_dsn) as stranger:
        (xid,) = stranger.execute("SELECT pg_current_xact_id()::text::bigint").fetchone() or (0,)
        written = store.write(touch("document:s#viewer@user:s"))
        assert store.head_revision() == written
        (xmin,) = stranger.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        ).fetchone() or (0,)
        assert xmin <= xid  # the stranger is still open, holding the cluster's xmin back
        stranger.rollback()
