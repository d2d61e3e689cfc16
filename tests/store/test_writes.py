"""Writer.write and Writer.delete: operations, preconditions, validation, delete by filter.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policyd.errors import (
    AlreadyExistsError,
    InvalidRelationshipError,
    InvalidRequestError,
    PreconditionFailedError,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.store.base import ChangeKind, Store
from tests.clock import FakeClock
from tests.store.shorthand import AT_URI, DID, create, delete, everything, exists, rel, touch

# ---- operations ---------------------------------------------------------------------------------


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


def test_a_delete_by_filter_that_matches_nothing_makes_no_revision(store: Store) -> None:
    store.write(touch("document:1#viewer@user:alice"))
    head = store.head_revision()
    nobody = RelationshipFilter(resource_type="document", subject_id="nobody")
    assert store.delete(nobody) == (head, 0)
    assert store.delete(nobody, limit=10) == (head, 0)
    assert store.head_revision() == head
    assert store.changes(head - 1) == store.changes(head - 1, 100)
    assert [e.revision for e in store.changes(head - 1)] == [head]
    after, count = store.delete(RelationshipFilter(resource_type="document"))
    assert after > head
    assert count == 1


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
    # Context values are checked against the caveat's parameter types, as SpiceDB does.
    (
        'document:1#viewer@user:alice[only_weekdays:{"day":1}]',
        "caveat.context",
        "parameter 'day': expected string, got int 1",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"expires":1}]',
        "caveat.context",
        "parameter 'expires': expected RFC 3339 timestamp string, got int 1",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"expires":"next tuesday"}]',
        "caveat.context",
        "parameter 'expires': invalid timestamp 'next tuesday'",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"tags":{"score":NaN}}]',
        "caveat.context",
        r"parameter 'tags'\['score'\]: NaN is not a JSON number",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"tags":{"a":Infinity}}]',
        "caveat.context",
        r"parameter 'tags'\['a'\]: Infinity is not a JSON number",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"tags":' + '{"a":' * 33 + "1" + "}" * 34 + "]",
        "caveat.context",
        "parameter 'tags' nests deeper than 32 levels",
    ),
    (
        'document:1#editor@user:alice[unexpired:{"tags":{"a":"' + "x" * 25_000 + '"}}]',
        "caveat.context",
        "the context takes 25017 bytes as JSON; the limit is 25000",
    ),
]


@pytest.mark.parametrize(("text", "field", "message"), INVALID, ids=[t[:80] for t, _, _ in INVALID])
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
