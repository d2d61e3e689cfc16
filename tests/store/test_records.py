"""RecordSink contract: record → relationship links, stale changes, repo removal, positions."""

from __future__ import annotations

import pytest

from policyd.errors import InvalidRelationshipError
from policyd.store.base import ChangeKind, Store
from policyd.store.records import RecordChange, RepoRemoval

from .shorthand import everything, rel, touch

ALICE = "did:plc:alice"
BOB = "did:plc:bob"
FOLLOW = f"at://{ALICE}/app.bsky.graph.follow/3k1"
FOLLOW_AGAIN = f"at://{ALICE}/app.bsky.graph.follow/3k2"
SOURCE = "ws://relay.test"


def member(group: str, user: str) -> str:
    return f"group:{group}#member@user:{user}"


def change(uri: str, rev: str, *texts: str) -> RecordChange:
    return RecordChange(uri, rev, tuple(rel(t) for t in texts))


def deleted(uri: str, rev: str) -> RecordChange:
    return RecordChange(uri, rev, (), deleted=True)


def test_create_update_delete_follow_the_record(store: Store) -> None:
    applied = store.apply_records(SOURCE, [change(FOLLOW, "a1", member("g", "bob"))], 10)
    assert (applied.applied, applied.stale) == (1, 0)
    assert everything(store) == [member("g", "bob")]
    store.apply_records(SOURCE, [change(FOLLOW, "a2", member("g", "carol"))], 11)
    assert everything(store) == [member("g", "carol")]
    store.apply_records(SOURCE, [deleted(FOLLOW, "a3")], 12)
    assert everything(store) == []
    assert store.ingest_position(SOURCE) == 12
    assert store.ingest_position("elsewhere") is None


def test_a_duplicate_or_older_change_is_stale_and_changes_nothing(store: Store) -> None:
    store.apply_records(SOURCE, [change(FOLLOW, "a2", member("g", "bob"))], 1)
    head = store.head_revision()
    again = store.apply_records(SOURCE, [change(FOLLOW, "a2", member("g", "bob"))], 2)
    older = store.apply_records(SOURCE, [change(FOLLOW, "a1", member("g", "carol"))], 3)
    assert (again.stale, older.stale) == (1, 1)
    assert everything(store) == [member("g", "bob")]
    assert [e for e in store.changes(head) if e.kind is not ChangeKind.POLICY] == []


def test_a_late_create_cannot_revive_a_deleted_record(store: Store) -> None:
    store.apply_records(SOURCE, [deleted(FOLLOW, "a5")], 1)
    late = store.apply_records(SOURCE, [change(FOLLOW, "a4", member("g", "bob"))], 2)
    assert late.stale == 1
    assert everything(store) == []


def test_a_relationship_stays_while_any_record_links_it(store: Store) -> None:
    store.apply_records(
        SOURCE,
        [change(FOLLOW, "a1", member("g", "bob")), change(FOLLOW_AGAIN, "a2", member("g", "bob"))],
        1,
    )
    store.apply_records(SOURCE, [deleted(FOLLOW, "a3")], 2)
    assert everything(store) == [member("g", "bob")]
    store.apply_records(SOURCE, [deleted(FOLLOW_AGAIN, "a4")], 3)
    assert everything(store) == []


def test_changes_within_one_batch_fold_into_one_event_per_relationship(store: Store) -> None:
    head = store.head_revision()
    revision = store.apply_records(
        SOURCE,
        [
            change(FOLLOW, "a1", member("g", "bob")),
            deleted(FOLLOW, "a2"),
            change(FOLLOW_AGAIN, "a3", member("g", "carol")),
        ],
        7,
    ).revision
    events = store.changes(head)
    assert [(e.revision, e.kind, str(e.relationship)) for e in events] == [
        (revision, ChangeKind.TOUCH, member("g", "carol"))
    ]


def test_repo_removal_drops_the_repos_links_only(store: Store) -> None:
    other = f"at://{BOB}/app.bsky.graph.follow/3k9"
    store.apply_records(
        SOURCE,
        [
            change(FOLLOW, "a1", member("g", "bob")),
            change(FOLLOW_AGAIN, "a2", member("h", "bob")),
            change(other, "b1", member("g", "alice")),
        ],
        1,
    )
    removed = store.apply_records(SOURCE, [RepoRemoval(ALICE)], 2)
    assert removed.applied == 1
    assert everything(store) == [member("g", "alice")]
    late = store.apply_records(SOURCE, [change(FOLLOW, "a1", member("g", "bob"))], 3)
    assert late.stale == 1
    assert everything(store) == [member("g", "alice")]


def test_a_record_deleted_leaves_relationships_written_by_others_alone(store: Store) -> None:
    store.write(touch(member("g", "dave")))
    store.apply_records(SOURCE, [deleted(FOLLOW, "a1")], 1)
    assert everything(store) == [member("g", "dave")]


def test_a_relationship_the_policy_refuses_applies_nothing(store: Store) -> None:
    store.apply_records(SOURCE, [change(FOLLOW, "a1", member("g", "bob"))], 1)
    head = store.head_revision()
    with pytest.raises(InvalidRelationshipError):
        store.apply_records(
            SOURCE,
            [deleted(FOLLOW, "a2"), change(FOLLOW_AGAIN, "a3", "group:g#nonsense@user:x")],
            2,
        )
    assert store.head_revision() == head
    assert everything(store) == [member("g", "bob")]
    assert store.ingest_position(SOURCE) == 1
