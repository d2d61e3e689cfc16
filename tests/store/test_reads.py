"""SnapshotReader: filtered reads and paging, old and future revisions, set-at-a-time reads.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from policyd.errors import (
    InvalidRequestError,
    RevisionUnavailableError,
)
from policyd.filters import RelationshipFilter
from policyd.store.base import Cursor, Store
from policyd.tokens import STORE_IDENTITY_BYTES, TokenCodec
from tests.store.shorthand import delete, everything, exists, rel, touch

# ---- reads and paging ---------------------------------------------------------------------------


def test_filters_may_name_wildcards_and_subjects_without_relation(store: Store) -> None:
    store.write(touch("document:1#viewer@user:*", "document:1#viewer@user:u1"))
    wildcard = RelationshipFilter(subject_type="user", subject_id="*")
    assert [str(r) for r in store.snapshot().read(wildcard).relationships] == [
        "document:1#viewer@user:*"
    ]
    plain = RelationshipFilter(subject_id="u1", subject_relation="")
    assert [str(r) for r in store.snapshot().read(plain).relationships] == [
        "document:1#viewer@user:u1"
    ]


def test_filtered_reads_page_in_key_order_at_one_snapshot(store: Store) -> None:
    texts = [f"document:{d}#viewer@user:u{u}" for d in range(5) for u in range(4)]
    texts += ["document:0#viewer@group:g#member", "group:g#member@user:u1"]
    shuffled = texts[:]
    random.Random(7).shuffle(shuffled)
    store.write(touch(*shuffled))
    expected = sorted(
        (str(r) for r in map(rel, texts) if r.resource.type == "document"),
        key=lambda t: rel(t).key,
    )
    seen: list[str] = []
    cursor: Cursor | None = None
    page = store.snapshot().read(RelationshipFilter(resource_type="document"), limit=3)
    snapshot = page.revision
    store.write(touch("document:0#viewer@user:zz"))  # after the first page: not in the listing
    while True:
        seen.extend(str(r) for r in page.relationships)
        assert len(page.relationships) <= 3
        if page.cursor is None:
            break
        codec = TokenCodec(store.identity)
        cursor = Cursor.decode(page.cursor.encode(codec), codec)
        page = store.snapshot(cursor.revision).read(
            RelationshipFilter(resource_type="document"), cursor, limit=3
        )
        assert page.revision == snapshot
    assert seen == expected


FILTERS = [
    (RelationshipFilter("document", "1"), lambda r: r.resource.id == "1"),
    (RelationshipFilter(relation="owner"), lambda r: r.relation == "owner"),
    (RelationshipFilter(subject_type="group"), lambda r: r.subject.type == "group"),
    (RelationshipFilter(subject_id="u1"), lambda r: r.subject.id == "u1"),
    (RelationshipFilter(subject_relation=""), lambda r: r.subject.relation is None),
    (RelationshipFilter(subject_relation="member"), lambda r: r.subject.relation == "member"),
    (
        RelationshipFilter("document", relation="viewer", subject_type="user", subject_id="u1"),
        lambda r: r.resource.type == "document" and r.relation == "viewer" and r.subject.id == "u1",
    ),
]


@pytest.mark.parametrize(("flt", "pred"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_read_filters(store: Store, flt: RelationshipFilter, pred: object) -> None:
    texts = [
        "document:1#viewer@user:u1",
        "document:1#owner@user:u2",
        "document:2#viewer@user:u1",
        "document:2#viewer@group:g#member",
        "document:3#owner@user:u1",
        "group:g#member@user:u1",
        "group:g#member@group:h#member",
    ]
    store.write(touch(*texts))
    assert callable(pred)
    expected = sorted((rel(t) for t in texts if pred(rel(t))), key=lambda r: r.key)
    page = store.snapshot().read(flt)
    assert [str(r) for r in page.relationships] == [str(r) for r in expected]


def test_cursor_for_another_revision_is_refused(store: Store) -> None:
    store.write(touch("document:1#viewer@user:a", "document:2#viewer@user:b"))
    page = store.snapshot().read(RelationshipFilter(), limit=1)
    assert page.cursor is not None
    store.write(touch("document:3#viewer@user:c"))
    with pytest.raises(InvalidRequestError):
        store.snapshot().read(RelationshipFilter(), page.cursor)
    with pytest.raises(InvalidRequestError):
        Cursor.decode("not a cursor", TokenCodec(store.identity))


def test_cursor_of_another_store_is_refused(store: Store) -> None:
    store.write(touch("document:1#viewer@user:a", "document:2#viewer@user:b"))
    page = store.snapshot().read(RelationshipFilter(), limit=1)
    assert page.cursor is not None
    ours, theirs = TokenCodec(store.identity), TokenCodec(bytes(STORE_IDENTITY_BYTES))
    assert Cursor.decode(page.cursor.encode(ours), ours) == page.cursor
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        Cursor.decode(page.cursor.encode(theirs), ours)
    assert raised.value.field == "cursor"


# ---- snapshots ----------------------------------------------------------------------------------


def test_reads_at_old_revisions_see_old_data(store: Store) -> None:
    r1 = store.write(touch("document:1#viewer@user:alice", "document:1#viewer@user:bob"))
    r2 = store.write(delete("document:1#viewer@user:alice"))
    r3 = store.write(touch("document:1#viewer@user:carol"))
    r4 = store.write(touch('document:1#viewer@user:bob[only_weekdays:{"day":"sun"}]'))
    assert everything(store, r1) == ["document:1#viewer@user:alice", "document:1#viewer@user:bob"]
    assert everything(store, r2) == ["document:1#viewer@user:bob"]
    assert everything(store, r3) == ["document:1#viewer@user:bob", "document:1#viewer@user:carol"]
    assert everything(store, r4)[0].startswith("document:1#viewer@user:bob[only_weekdays")
    assert [str(r) for r in store.snapshot(r1).subjects_of("document", ["1"], "viewer")] == (
        everything(store, r1)
    )
    assert exists(store, "document:1#viewer@user:alice", r1)
    assert not exists(store, "document:1#viewer@user:alice", r2)
    assert list(map(str, store.snapshot(r2).export_relationships())) == everything(store, r2)


def test_reads_in_the_future_are_refused(store: Store) -> None:
    head = store.head_revision()
    future = store.snapshot(head + 1)  # making a snapshot checks nothing; every read does
    assert future.revision == head + 1
    with pytest.raises(RevisionUnavailableError) as info:
        future.read(RelationshipFilter())
    assert info.value.code == "revision-unavailable"
    reads: list[Callable[[], object]] = [
        lambda: future.get(rel("document:1#viewer@user:a").key),
        lambda: future.subjects_of("document", ["1"], "viewer"),
        lambda: future.resources_of("document", "viewer", subject_type="user", subject_ids=["a"]),
        lambda: list(future.export_relationships()),
        lambda: list(future.export_rows()),
        future.read_policy,
    ]
    for read in reads:
        with pytest.raises(RevisionUnavailableError):
            read()
    with pytest.raises(RevisionUnavailableError):
        store.changes(head + 1)


def test_a_snapshot_of_the_head_stays_at_that_revision(store: Store) -> None:
    store.write(touch("document:1#viewer@user:a"))
    snapshot = store.snapshot()
    assert snapshot.revision == store.head_revision()
    store.write(touch("document:2#viewer@user:b"))
    assert [str(r) for r in snapshot.read(RelationshipFilter()).relationships] == [
        "document:1#viewer@user:a"
    ]
    assert snapshot.get(rel("document:2#viewer@user:b").key) is None


# ---- engine queries -----------------------------------------------------------------------------


def test_subjects_of_many_resources_in_one_call(store: Store) -> None:
    store.write(
        touch(
            "document:1#viewer@user:a",
            "document:1#viewer@group:g#member",
            "document:2#viewer@user:*",
            "document:2#owner@user:b",
            "document:3#viewer@user:c",
        )
    )
    snapshot = store.snapshot()
    found = snapshot.subjects_of("document", ["1", "2", "missing"], "viewer")
    assert [str(r) for r in found] == [
        "document:1#viewer@group:g#member",
        "document:1#viewer@user:a",
        "document:2#viewer@user:*",
    ]
    users = snapshot.subjects_of("document", {"1", "2"}, "viewer", subject_type="user")
    assert [str(r) for r in users] == ["document:1#viewer@user:a", "document:2#viewer@user:*"]
    assert snapshot.subjects_of("document", [], "viewer") == []


def test_resources_of_many_subjects_in_one_call(store: Store) -> None:
    store.write(
        touch(
            "document:1#viewer@user:a",
            "document:2#viewer@user:a",
            "document:2#viewer@user:b",
            "document:3#viewer@user:*",
            "document:4#viewer@group:g#member",
            "document:5#owner@user:a",
        )
    )
    snapshot = store.snapshot()
    found = snapshot.resources_of(
        "document", "viewer", subject_type="user", subject_ids=["a", "b", "*"]
    )
    assert [str(r) for r in found] == [
        "document:3#viewer@user:*",
        "document:1#viewer@user:a",
        "document:2#viewer@user:a",
        "document:2#viewer@user:b",
    ]
    usersets = snapshot.resources_of(
        "document", "viewer", subject_type="group", subject_ids=["g"], subject_relation="member"
    )
    assert [str(r) for r in usersets] == ["document:4#viewer@group:g#member"]
    assert (
        snapshot.resources_of("document", "viewer", subject_type="group", subject_ids=["g"]) == []
    )


def test_thousands_of_ids_in_one_call(store: Store) -> None:
    store.import_relationships(rel(f"document:{i}#viewer@user:u{i}") for i in range(3000))
    ids = [str(i) for i in range(0, 3000, 2)] + [f"missing{i}" for i in range(2000)]
    snapshot = store.snapshot()
    assert len(snapshot.subjects_of("document", ids, "viewer")) == 1500
    subjects = [f"u{i}" for i in range(1, 3000, 2)]
    found = snapshot.resources_of("document", "viewer", subject_type="user", subject_ids=subjects)
    assert len(found) == 1500
