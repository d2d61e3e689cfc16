"""The Store contract: every backend must pass every test here, identically."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from policyd.errors import (
    AlreadyExistsError,
    InvalidRelationshipError,
    InvalidRequestError,
    PolicyChangeRefusedError,
    PreconditionFailedError,
    RevisionUnavailableError,
)
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_relationship,
)
from policyd.schema.ir import AllowedSubject
from policyd.store.base import (
    ChangeKind,
    Cursor,
    Precondition,
    RelationshipFilter,
    Store,
)
from policyd.tokens import STORE_IDENTITY_BYTES, TokenCodec
from tests.store.conftest import FakeClock, StoreFactory
from tests.store.schemas import (
    POLICY_TEXT,
    base_schema,
    with_allowed,
    without_relation,
    without_type,
)


def rel(text: str) -> Relationship:
    return parse_relationship(text)


def ups(op: Operation, *texts: str) -> list[RelationshipUpdate]:
    return [RelationshipUpdate(op, rel(t)) for t in texts]


def create(*texts: str) -> list[RelationshipUpdate]:
    return ups(Operation.CREATE, *texts)


def touch(*texts: str) -> list[RelationshipUpdate]:
    return ups(Operation.TOUCH, *texts)


def delete(*texts: str) -> list[RelationshipUpdate]:
    return ups(Operation.DELETE, *texts)


def everything(store: Store, revision: int | None = None) -> list[str]:
    page = store.snapshot(revision).read(RelationshipFilter(), limit=10_000)
    assert page.cursor is None
    return [str(r) for r in page.relationships]


def exists(store: Store, text: str, revision: int | None = None) -> bool:
    return store.snapshot(revision).get(rel(text).key) is not None


DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
AT_URI = f"at://{DID}/app.bsky.feed.post/3k44dxzlmd52a"

# ---- basics -------------------------------------------------------------------------------------


def test_empty_store(bare_store: Store) -> None:
    assert bare_store.head_revision() == 0
    assert bare_store.snapshot().read_policy() is None
    assert bare_store.changes(0) == []
    assert everything(bare_store) == []


def test_identity_is_made_with_the_store_and_kept(open_backend: StoreFactory) -> None:
    first = open_backend()
    identity = first.identity
    assert isinstance(identity, bytes)
    assert len(identity) == STORE_IDENTITY_BYTES
    first.write_policy(POLICY_TEXT, base_schema())
    assert first.identity == identity
    assert open_backend().identity == identity  # reopened: the same file, the same schema


def test_cursor_of_another_store_is_refused(store: Store) -> None:
    store.write(touch("document:1#viewer@user:a", "document:2#viewer@user:b"))
    page = store.snapshot().read(RelationshipFilter(), limit=1)
    assert page.cursor is not None
    ours, theirs = TokenCodec(store.identity), TokenCodec(bytes(STORE_IDENTITY_BYTES))
    assert Cursor.decode(page.cursor.encode(ours), ours) == page.cursor
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        Cursor.decode(page.cursor.encode(theirs), ours)
    assert raised.value.field == "cursor"


def test_writing_before_any_policy_is_refused(bare_store: Store) -> None:
    with pytest.raises(InvalidRelationshipError, match="no policy") as info:
        bare_store.write(touch("document:1#viewer@user:alice"))
    assert info.value.code == "invalid-relationship"
    with pytest.raises(InvalidRelationshipError, match="no policy"):
        bare_store.import_relationships([rel("document:1#viewer@user:alice")])
    assert bare_store.head_revision() == 0


def test_policy_round_trip_and_versions(bare_store: Store) -> None:
    r1 = bare_store.write_policy("first", base_schema())
    r2 = bare_store.write_policy("second", without_relation(base_schema(), "document", "temp"))
    assert r2 > r1
    first = bare_store.snapshot(r1).read_policy()
    assert first is not None
    text, schema, revision = first
    assert (text, schema, revision) == ("first", base_schema(), r1)
    latest = bare_store.snapshot().read_policy()
    assert latest is not None
    assert latest.text == "second"
    assert "temp" not in latest.schema.definitions["document"].relations


def test_create_touch_delete_each_yield_a_new_revision(store: Store) -> None:
    head = store.head_revision()
    r1 = store.write(create("document:1#viewer@user:alice"))
    r2 = store.write(touch("document:1#owner@user:bob", f"document:{DID}#viewer@user:{DID}"))
    r3 = store.write(delete("document:1#viewer@user:alice"))
    assert head < r1 < r2 < r3 == store.head_revision()
    assert everything(store) == [
        "document:1#owner@user:bob",
        f"document:{DID}#viewer@user:{DID}",
    ]
    assert exists(store, "document:1#viewer@user:alice", r2)
    assert not exists(store, "document:1#viewer@user:alice", r3)


def test_ids_are_stored_as_given(store: Store) -> None:
    store.write(touch(f"document:{AT_URI}#viewer@group:{DID}#member"))
    (found,) = store.snapshot().subjects_of("document", [AT_URI], "viewer")
    assert found.resource.id == AT_URI
    assert found.subject.id == DID
    assert found.subject.relation == "member"


def test_caveat_and_expiry_round_trip(store: Store, clock: FakeClock) -> None:
    expires = datetime.fromtimestamp(int(clock.now) + 3600, tz=UTC).replace(microsecond=123456)
    caveated = Relationship(
        rel("document:1#viewer@user:alice").resource,
        "viewer",
        rel("document:1#viewer@user:alice").subject,
        "only_weekdays",
        {"day": "mon"},
    )
    expiring = Relationship(
        rel("document:1#temp@user:bob").resource,
        "temp",
        rel("document:1#temp@user:bob").subject,
        expires_at=expires,
    )
    store.write([RelationshipUpdate(Operation.TOUCH, r) for r in (caveated, expiring)])
    got = store.snapshot().get(caveated.key)
    assert got is not None
    assert (got.caveat_name, got.caveat_context) == ("only_weekdays", {"day": "mon"})
    got = store.snapshot().get(expiring.key)
    assert got is not None
    assert got.expires_at == expires


def test_create_of_a_live_relationship_fails_and_writes_nothing(store: Store) -> None:
    store.write(create("document:1#viewer@user:alice"))
    head = store.head_revision()
    with pytest.raises(AlreadyExistsError) as info:
        store.write(create("document:2#viewer@user:alice", "document:1#viewer@user:alice"))
    assert info.value.code == "already-exists"
    assert "document:1#viewer@user:alice" in str(info.value)
    assert store.head_revision() == head
    assert not exists(store, "document:2#viewer@user:alice")


def test_create_after_delete_succeeds(store: Store) -> None:
    store.write(create("document:1#viewer@user:alice"))
    store.write(delete("document:1#viewer@user:alice"))
    store.write(create("document:1#viewer@user:alice"))
    assert exists(store, "document:1#viewer@user:alice")


def test_touch_of_identical_relationship_is_a_no_op(store: Store) -> None:
    r1 = store.write(touch("document:1#viewer@user:alice"))
    r2 = store.write(touch("document:1#viewer@user:alice"))
    assert r2 > r1
    assert [e.revision for e in store.changes(r1)] == []


def test_touch_with_new_caveat_replaces(store: Store) -> None:
    r1 = store.write(touch("document:1#viewer@user:alice"))
    r2 = store.write(touch('document:1#viewer@user:alice[only_weekdays:{"day":"sun"}]'))
    got = store.snapshot().get(rel("document:1#viewer@user:alice").key)
    assert got is not None
    assert got.caveat_name == "only_weekdays"
    before = store.snapshot(r1).get(rel("document:1#viewer@user:alice").key)
    assert before is not None
    assert before.caveat_name is None
    (event,) = store.changes(r1)
    assert (event.revision, event.kind) == (r2, ChangeKind.TOUCH)
    assert event.relationship is not None
    assert event.relationship.caveat_context == {"day": "sun"}


def test_delete_of_a_missing_relationship_is_a_no_op(store: Store) -> None:
    before = store.head_revision()
    after = store.write(delete("document:1#viewer@user:alice"))
    assert after > before
    assert store.changes(before) == []


def test_two_updates_of_one_relationship_in_a_batch_are_refused(store: Store) -> None:
    updates = touch("document:1#viewer@user:alice") + delete("document:1#viewer@user:alice")
    with pytest.raises(InvalidRelationshipError, match=r"updates\[0\]") as info:
        store.write(updates)
    assert info.value.field == "updates[1].relationship"


# ---- preconditions ------------------------------------------------------------------------------


def test_preconditions(store: Store) -> None:
    store.write(touch("document:1#owner@user:alice"))
    owner = RelationshipFilter("document", "1", "owner")
    head = store.head_revision()
    with pytest.raises(PreconditionFailedError) as info:
        store.write(touch("document:1#viewer@user:bob"), [Precondition.must_not_match(owner)])
    assert info.value.code == "precondition-failed"
    missing = RelationshipFilter(subject_type="user", subject_id="nobody")
    with pytest.raises(PreconditionFailedError):
        store.write(touch("document:1#viewer@user:bob"), [Precondition.must_match(missing)])
    assert store.head_revision() == head
    store.write(
        touch("document:1#viewer@user:bob"),
        [Precondition.must_match(owner), Precondition.must_not_match(missing)],
    )
    assert exists(store, "document:1#viewer@user:bob")


# ---- validation ---------------------------------------------------------------------------------

INVALID = [
    ("folder:1#viewer@user:alice", "resource.type", "no type 'folder'"),
    ("document:1#reader@user:alice", "relation", "no relation 'reader'"),
    ("document:1#view@user:alice", "relation", "is a permission"),
    ("document:1#owner@group:eng", "subject.type", "not allowed"),
    ("document:1#owner@group:eng#member", "subject.type", "not allowed"),
    ("document:1#viewer@group:eng", "subject.type", "not allowed"),
    ("document:1#viewer@group:eng#owner", "subject.relation", "not allowed"),
    ("document:1#owner@user:*", "subject.id", "not allowed"),
    ("document:1#editor@user:alice", "caveat.name", "needs only_weekdays"),
    ("document:1#owner@user:alice[only_weekdays]", "caveat.name", "not caveat 'only_weekdays'"),
    ("document:1#viewer@user:alice[nope]", "caveat.name", "no caveat 'nope'"),
    ("document:1#viewer@user:alice[other_caveat]", "caveat.name", "needs"),
    (
        'document:1#viewer@user:alice[only_weekdays:{"hour":1}]',
        "caveat.context",
        "no parameter 'hour'",
    ),
    ("document:1#owner@user:alice[expiration:2099-01-01T00:00:00Z]", "expiration", "does not"),
    ("document:1#temp@user:alice", "expiration", "requires an expiration"),
]


@pytest.mark.parametrize(("text", "field", "message"), INVALID, ids=[t for t, _, _ in INVALID])
def test_invalid_relationships_refuse_the_whole_batch(
    store: Store, text: str, field: str, message: str
) -> None:
    head = store.head_revision()
    updates = touch("document:ok#viewer@user:alice") + touch(text)
    with pytest.raises(InvalidRelationshipError, match=message) as info:
        store.write(updates)
    assert info.value.field == f"updates[1].relationship.{field}"
    assert text.split("[")[0] in str(info.value)
    assert store.head_revision() == head
    assert not exists(store, "document:ok#viewer@user:alice")
    with pytest.raises(InvalidRelationshipError, match=message):
        store.import_relationships([rel("document:ok#viewer@user:alice"), rel(text)])
    assert store.head_revision() == head


# A trailing newline once made "did:plc:mallory\n" a second, invisible-looking subject.
TRAILING_NEWLINE = [
    pytest.param(
        Relationship(ObjectRef("document", "1\n"), "viewer", SubjectRef("user", "alice")),
        "resource.id",
        id="resource-id",
    ),
    pytest.param(
        Relationship(ObjectRef("document", "1"), "viewer", SubjectRef("user", "mallory\n")),
        "subject.id",
        id="subject-id",
    ),
    pytest.param(
        Relationship(ObjectRef("document", "1"), "viewer\n", SubjectRef("user", "alice")),
        "relation",
        id="relation",
    ),
    pytest.param(
        Relationship(ObjectRef("document", "1"), "viewer", SubjectRef("group", "eng", "member\n")),
        "subject.relation",
        id="subject-relation",
    ),
]


@pytest.mark.parametrize(("relationship", "field"), TRAILING_NEWLINE)
def test_a_trailing_newline_is_refused_naming_the_field(
    store: Store, relationship: Relationship, field: str
) -> None:
    head = store.head_revision()
    for operation in (Operation.CREATE, Operation.TOUCH, Operation.DELETE):
        with pytest.raises(InvalidRelationshipError) as info:
            store.write([RelationshipUpdate(operation, relationship)])
        assert info.value.field == f"updates[0].relationship.{field}"
    with pytest.raises(InvalidRelationshipError) as info:
        store.import_relationships([relationship])
    assert info.value.field == f"relationships[0].relationship.{field}"
    assert store.head_revision() == head


def test_valid_subject_kinds_are_accepted(store: Store, clock: FakeClock) -> None:
    soon = datetime.fromtimestamp(clock.now + 600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.write(
        touch(
            "document:1#viewer@user:alice",
            "document:1#viewer@user:*",
            "document:1#viewer@group:eng#member",
            'document:1#viewer@user:bob[only_weekdays:{"day":"mon"}]',
            f"document:1#viewer@user:carol[expiration:{soon}]",
            f"document:1#temp@user:carol[expiration:{soon}]",
            "group:eng#member@group:ops#member",
        )
    )
    assert len(everything(store)) == 7


# ---- delete by filter ---------------------------------------------------------------------------

# A filter naming "u1\n" would match nothing, and a revocation would silently delete nothing.
MALFORMED_FILTERS = [
    pytest.param(RelationshipFilter("document\n"), "resource_type", id="resource-type"),
    pytest.param(RelationshipFilter("document", "1\n"), "resource_id", id="resource-id"),
    pytest.param(RelationshipFilter("document", "*"), "resource_id", id="resource-wildcard"),
    pytest.param(RelationshipFilter(relation="viewer "), "relation", id="relation"),
    pytest.param(RelationshipFilter(subject_type="user\t"), "subject_type", id="subject-type"),
    pytest.param(RelationshipFilter(subject_id="u1\n"), "subject_id", id="subject-id"),
    pytest.param(
        RelationshipFilter(subject_relation="member\n"), "subject_relation", id="subj-rel"
    ),
]


@pytest.mark.parametrize(("flt", "part"), MALFORMED_FILTERS)
def test_malformed_filters_are_refused_naming_the_field(
    store: Store, flt: RelationshipFilter, part: str
) -> None:
    store.write(touch("document:1#viewer@user:u1"))
    head = store.head_revision()
    with pytest.raises(InvalidRequestError) as raised:
        store.delete(flt)
    assert raised.value.field == f"filter.{part}"
    with pytest.raises(InvalidRequestError) as raised:
        store.snapshot().read(flt)
    assert raised.value.field == f"filter.{part}"
    with pytest.raises(InvalidRequestError) as raised:
        store.write(touch("document:2#viewer@user:u1"), [Precondition.must_not_match(flt)])
    assert raised.value.field == f"preconditions[0].filter.{part}"
    assert store.head_revision() == head


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


def test_delete_by_filter_with_limit(store: Store) -> None:
    texts = [f"document:{i:02}#viewer@user:u{i % 3}" for i in range(12)]
    store.write(touch(*texts, "document:99#owner@user:u0"))
    viewers_of_u0 = RelationshipFilter(relation="viewer", subject_type="user", subject_id="u0")
    revision, count = store.delete(viewers_of_u0, limit=3)
    assert count == 3
    deleted = [t for t in texts if t.endswith("u0")][:3]
    assert not any(exists(store, t) for t in deleted)
    revision2, count = store.delete(viewers_of_u0)
    assert revision2 > revision
    assert count == 1
    assert exists(store, "document:99#owner@user:u0")
    assert store.delete(viewers_of_u0, limit=5)[1] == 0
    with pytest.raises(InvalidRequestError):
        store.delete(RelationshipFilter())
    with pytest.raises(InvalidRequestError):
        store.delete(viewers_of_u0, limit=0)


# ---- reads and paging ---------------------------------------------------------------------------


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


# ---- expiry -------------------------------------------------------------------------------------


def test_expired_relationships_vanish_at_once_and_gc_removes_them(
    store: Store, clock: FakeClock
) -> None:
    when = datetime.fromtimestamp(clock.now + 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"document:1#temp@user:alice[expiration:{when}]"
    r1 = store.write(touch(text, "document:1#viewer@user:bob"))
    assert exists(store, text)
    clock.now = rel(text).expires_at.timestamp()  # type: ignore[union-attr]
    assert not exists(store, text)
    assert not exists(store, text, r1)
    snapshot = store.snapshot()
    assert snapshot.subjects_of("document", ["1"], "temp") == []
    assert (
        snapshot.resources_of("document", "temp", subject_type="user", subject_ids=["alice"]) == []
    )
    assert everything(store) == ["document:1#viewer@user:bob"]
    temp = RelationshipFilter("document", "1", "temp")
    with pytest.raises(PreconditionFailedError):
        store.write(touch("document:2#viewer@user:x"), [Precondition.must_match(temp)])
    assert store.delete(temp)[1] == 0
    later = datetime.fromtimestamp(clock.now + 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.write(create(f"document:1#temp@user:alice[expiration:{later}]"))
    assert exists(store, text)
    clock.advance(120)
    result = store.gc()
    assert result.removed >= 1
    assert everything(store) == ["document:1#viewer@user:bob"]


# ---- change log ---------------------------------------------------------------------------------


def test_change_log_records_every_write_in_order(store: Store) -> None:
    start = store.head_revision()
    r1 = store.write(touch("document:1#viewer@user:b", "document:1#viewer@user:a"))
    r2 = store.write(delete("document:1#viewer@user:a") + touch("document:2#owner@user:c"))
    r3, _ = store.delete(RelationshipFilter(resource_type="document", resource_id="2"))
    r4 = store.write_policy("again", base_schema())
    r5 = store.import_relationships([rel("group:g#member@user:z")])
    events = [(e.revision, e.kind, str(e.relationship or "")) for e in store.changes(start)]
    assert events == [
        (r1, ChangeKind.TOUCH, "document:1#viewer@user:a"),
        (r1, ChangeKind.TOUCH, "document:1#viewer@user:b"),
        (r2, ChangeKind.DELETE, "document:1#viewer@user:a"),
        (r2, ChangeKind.TOUCH, "document:2#owner@user:c"),
        (r3, ChangeKind.DELETE, "document:2#owner@user:c"),
        (r4, ChangeKind.POLICY, ""),
        (r5, ChangeKind.TOUCH, "group:g#member@user:z"),
    ]
    assert [e.revision for e in store.changes(r3)] == [r4, r5]
    assert store.changes(r5) == []


def test_change_log_limit_never_splits_a_revision(store: Store) -> None:
    start = store.head_revision()
    r1 = store.write(touch(*(f"document:{i}#viewer@user:a" for i in range(5))))
    r2 = store.write(touch("document:9#viewer@user:a"))
    first = store.changes(start, limit=2)
    assert [e.revision for e in first] == [r1] * 5
    second = store.changes(first[-1].revision, limit=2)
    assert [e.revision for e in second] == [r2]
    with pytest.raises(InvalidRequestError):
        store.changes(start, limit=0)


# ---- garbage collection -------------------------------------------------------------------------


def test_gc_collects_old_deletions_and_old_revisions(store: Store, clock: FakeClock) -> None:
    r1 = store.write(touch("document:1#viewer@user:a", "document:1#viewer@user:b"))
    r2 = store.write(delete("document:1#viewer@user:a"))
    assert store.gc().removed == 0  # nothing is older than the window yet
    assert exists(store, "document:1#viewer@user:a", r1)
    clock.advance(timedelta(hours=25).total_seconds())
    r3 = store.write(touch("document:2#viewer@user:c"))
    result = store.gc()
    assert result.removed == 1
    assert result.oldest_revision == r2
    with pytest.raises(RevisionUnavailableError):
        store.snapshot(r1).get(rel("document:1#viewer@user:a").key)
    with pytest.raises(RevisionUnavailableError):
        store.changes(r1)
    assert everything(store, r2) == ["document:1#viewer@user:b"]
    assert [e.revision for e in store.changes(r2)] == [r3]


def test_gc_keeps_what_a_held_revision_sees(store: Store, clock: FakeClock) -> None:
    r1 = store.write(touch("document:1#viewer@user:a"))
    store.write(delete("document:1#viewer@user:a"))
    with store.hold(r1, ttl=timedelta(days=2)) as hold:
        assert hold.revision == r1
        clock.advance(timedelta(hours=25).total_seconds())
        store.write(touch("document:2#viewer@user:c"))
        assert store.gc().removed == 0
        assert exists(store, "document:1#viewer@user:a", r1)
        hold.renew()
    assert store.gc().removed == 1
    with pytest.raises(RevisionUnavailableError):
        store.hold(r1)


def test_an_abandoned_hold_expires(store: Store, clock: FakeClock) -> None:
    r1 = store.write(touch("document:1#viewer@user:a"))
    store.write(delete("document:1#viewer@user:a"))
    store.hold(r1, ttl=timedelta(hours=2))  # never released, as by a crashed reader
    clock.advance(timedelta(hours=25).total_seconds())
    assert store.gc().removed == 1


def test_gc_window_is_configurable(store: Store, clock: FakeClock) -> None:
    store.write(touch("document:1#viewer@user:a"))
    store.write(delete("document:1#viewer@user:a"))
    clock.advance(120)
    assert store.gc(timedelta(hours=1)).removed == 0
    assert store.gc(timedelta(minutes=1)).removed == 1


# ---- policy changes -----------------------------------------------------------------------------


def test_policy_change_that_orphans_relationships_is_refused(store: Store) -> None:
    store.write(
        touch(
            "document:1#temp@user:a[expiration:2999-01-01T00:00:00Z]",
            "document:1#viewer@user:*",
            "document:2#viewer@user:*",
            'document:1#editor@user:b[only_weekdays:{"day":"mon"}]',
            "group:g#member@user:c",
        )
    )
    schema = base_schema()
    cases = [
        (without_relation(schema, "document", "temp"), "document#temp@user with expiration"),
        (without_type(schema, "group"), "group#member@user"),
        (
            with_allowed(schema, "document", "viewer", AllowedSubject("user")),
            "2 relationships document#viewer@user:*",
        ),
        (
            with_allowed(schema, "document", "editor", AllowedSubject("user")),
            "document#editor@user with only_weekdays",
        ),
        (
            with_allowed(schema, "document", "temp", AllowedSubject("user")),
            "does not allow an expiration",
        ),
    ]
    head = store.head_revision()
    for new_schema, blocker in cases:
        with pytest.raises(PolicyChangeRefusedError) as info:
            store.write_policy("changed", new_schema)
        assert info.value.code == "policy-change-refused"
        assert any(blocker in b for b in info.value.blockers), info.value.blockers
    assert store.head_revision() == head
    policy = store.snapshot().read_policy()
    assert policy is not None
    assert policy.text == POLICY_TEXT
    store.delete(RelationshipFilter("document", relation="temp"))
    store.write_policy("changed", without_relation(schema, "document", "temp"))
    with pytest.raises(InvalidRelationshipError):
        store.write(touch("document:1#temp@user:a[expiration:2999-01-01T00:00:00Z]"))


# ---- import and export --------------------------------------------------------------------------


def test_import_then_export_in_key_order(store: Store) -> None:
    texts = [f"document:{i}#viewer@user:u{i % 7}" for i in range(2500)]
    random.Random(3).shuffle(texts)
    revision = store.import_relationships(rel(t) for t in texts)
    exported = [str(r) for r in store.snapshot(revision).export_relationships()]
    assert exported == [str(r) for r in sorted(map(rel, texts), key=lambda r: r.key)]
    found = store.snapshot().resources_of(
        "document", "viewer", subject_type="user", subject_ids=["u3"]
    )
    assert found[0].subject.id == "u3"
    assert [e.kind for e in store.changes(revision - 1)] == [ChangeKind.TOUCH] * 2500


def test_import_into_a_non_empty_store(store: Store, clock: FakeClock) -> None:
    when = datetime.fromtimestamp(clock.now + 10, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.write(touch("document:1#viewer@user:a", f"document:1#temp@user:a[expiration:{when}]"))
    clock.advance(20)
    store.import_relationships(
        [
            rel("document:2#viewer@user:a"),
            rel("document:1#temp@user:a[expiration:2999-01-01T00:00:00Z]"),
        ]
    )
    assert len(everything(store)) == 3
    assert [e.kind for e in store.changes(store.head_revision() - 1)] == [ChangeKind.TOUCH] * 2


def test_import_conflicts_refuse_the_whole_import(store: Store) -> None:
    store.write(touch("document:1#viewer@user:a"))
    head = store.head_revision()
    with pytest.raises(AlreadyExistsError):
        store.import_relationships(
            [rel("document:2#viewer@user:a"), rel("document:1#viewer@user:a")]
        )
    with pytest.raises(AlreadyExistsError):
        store.import_relationships(
            [rel("document:3#viewer@user:a"), rel("document:3#viewer@user:a")]
        )
    assert store.head_revision() == head
    assert everything(store) == ["document:1#viewer@user:a"]


def test_duplicate_import_into_an_empty_store_leaves_it_empty(store: Store) -> None:
    with pytest.raises(AlreadyExistsError):
        store.import_relationships([rel("document:3#viewer@user:a")] * 2)
    assert everything(store) == []
    store.import_relationships([rel("document:3#viewer@user:a")])
    assert everything(store) == ["document:3#viewer@user:a"]


# ---- durability ---------------------------------------------------------------------------------


def test_reopened_store_keeps_everything(open_backend: StoreFactory, backend: str) -> None:
    first = open_backend()
    first.write_policy(POLICY_TEXT, base_schema())
    revision = first.write(touch('document:1#viewer@user:a[only_weekdays:{"day":"mon"}]'))
    if backend in ("sqlite-file", "postgres"):
        first.close()
    second = open_backend()
    assert second.head_revision() == revision
    policy = second.snapshot().read_policy()
    assert policy is not None
    assert policy.schema == base_schema()
    assert everything(second) == ['document:1#viewer@user:a[only_weekdays:{"day": "mon"}]']
    second.write(touch("document:2#viewer@user:b"))
