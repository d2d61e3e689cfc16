"""Writer.write_group: many requests, one transaction, each request all or nothing on its own.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

import pytest

from policyd.errors import (
    AlreadyExistsError,
    InvalidRelationshipError,
    InvalidRequestError,
    PolicyChangeRefusedError,
    PreconditionFailedError,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.schema.ir import Schema
from policyd.store.base import (
    ChangeKind,
    DeleteRequest,
    GroupRequest,
    ImportRequest,
    Outcome,
    PolicyRequest,
    Store,
    WriteRequest,
)
from tests.store.schemas import POLICY_TEXT, base_schema
from tests.store.shorthand import create, everything, rel, touch


def write(*texts: str, preconditions: tuple[Precondition, ...] = ()) -> WriteRequest:
    return WriteRequest(tuple(touch(*texts)), preconditions)


def _first(outcomes: list[Outcome], head: int) -> int:
    """A group's first revision, above the head it began at.

    One transaction's revisions are consecutive; across transactions they only
    increase (PostgresStore numbers them by transaction id).
    """
    first = outcomes[0]
    assert isinstance(first, int)
    assert first > head
    return first


def test_each_request_gets_its_own_revision_in_order(store: Store) -> None:
    head = store.head_revision()
    outcomes = store.write_group(
        [
            write("document:1#viewer@user:a"),
            write("document:2#viewer@user:b", "document:3#viewer@user:c"),
        ]
    )
    first = _first(outcomes, head)
    assert outcomes == [first, first + 1]
    assert store.head_revision() == first + 1
    events = store.changes(head)
    assert [(e.revision, str(e.relationship)) for e in events] == [
        (first, "document:1#viewer@user:a"),
        (first + 1, "document:2#viewer@user:b"),
        (first + 1, "document:3#viewer@user:c"),
    ]


def test_a_delete_that_matches_nothing_takes_no_revision_in_a_group(store: Store) -> None:
    head = store.head_revision()
    outcomes = store.write_group(
        [
            write("document:1#viewer@user:a"),
            DeleteRequest(RelationshipFilter(resource_id="nothing-here")),
            write("document:2#viewer@user:b"),
        ]
    )
    first = _first(outcomes, head)
    assert outcomes == [first, (first, 0), first + 1]
    assert store.head_revision() == first + 1


FAILING: list[tuple[str, GroupRequest, type[Exception]]] = [
    (
        "create-of-a-live-relationship",
        WriteRequest(tuple(touch("document:9#viewer@user:z") + create("document:0#viewer@user:x"))),
        AlreadyExistsError,
    ),
    (
        "precondition",
        write(
            "document:9#viewer@user:z",
            preconditions=(Precondition.must_match(RelationshipFilter(resource_id="nothing")),),
        ),
        PreconditionFailedError,
    ),
    (
        "not-allowed-by-the-policy",
        WriteRequest(tuple(touch("document:9#viewer@user:z", "document:9#nonsense@user:z"))),
        InvalidRelationshipError,
    ),
    ("empty-delete-filter", DeleteRequest(RelationshipFilter()), InvalidRequestError),
    (
        "import-of-a-live-relationship",
        ImportRequest((rel("document:9#viewer@user:z"), rel("document:0#viewer@user:x"))),
        AlreadyExistsError,
    ),
    (
        "policy-that-orphans-relationships",
        PolicyRequest("// nothing", Schema(definitions={})),
        PolicyChangeRefusedError,
    ),
]


@pytest.mark.parametrize(
    ("request_", "error"), [f[1:] for f in FAILING], ids=[f[0] for f in FAILING]
)
def test_a_failing_request_fails_alone_and_leaves_nothing(
    store: Store, request_: GroupRequest, error: type[Exception]
) -> None:
    store.write(create("document:0#viewer@user:x"))
    head = store.head_revision()
    outcomes = store.write_group(
        [write("document:1#viewer@user:a"), request_, write("document:2#viewer@user:b")]
    )
    first = _first(outcomes, head)
    assert isinstance(outcomes[1], error)
    assert outcomes[2] == first + 1  # the failed request gave its revision back
    assert everything(store) == [
        "document:0#viewer@user:x",
        "document:1#viewer@user:a",
        "document:2#viewer@user:b",
    ]
    assert {e.revision for e in store.changes(head)} == {first, first + 1}


def test_later_requests_see_earlier_ones(store: Store) -> None:
    head = store.head_revision()
    outcomes = store.write_group(
        [
            WriteRequest(tuple(create("document:1#viewer@user:a"))),
            WriteRequest(tuple(create("document:1#viewer@user:a"))),
            DeleteRequest(RelationshipFilter(resource_id="1")),
            ImportRequest((rel("document:1#viewer@user:a"),)),
        ]
    )
    first = _first(outcomes, head)
    assert isinstance(outcomes[1], AlreadyExistsError)
    assert outcomes[2:] == [(first + 1, 1), first + 2]
    kinds = [(e.revision, e.kind) for e in store.changes(head)]
    assert kinds == [
        (first, ChangeKind.TOUCH),
        (first + 1, ChangeKind.DELETE),
        (first + 2, ChangeKind.TOUCH),
    ]


def test_a_policy_written_in_a_group_governs_the_requests_after_it(bare_store: Store) -> None:
    outcomes = bare_store.write_group(
        [
            write("document:1#viewer@user:a"),
            PolicyRequest(POLICY_TEXT, base_schema()),
            write("document:1#viewer@user:a"),
        ]
    )
    assert isinstance(outcomes[0], InvalidRelationshipError)  # no policy yet
    first = _first(outcomes[1:], 0)
    assert outcomes[1:] == [first, first + 1]
    assert everything(bare_store) == ["document:1#viewer@user:a"]
    policy = bare_store.snapshot().read_policy()
    assert policy is not None
    assert policy.revision == first


def test_an_empty_group_writes_nothing(store: Store) -> None:
    head = store.head_revision()
    assert store.write_group([]) == []
    assert store.head_revision() == head
