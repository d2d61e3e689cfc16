"""ChangeLog: every write's events in order, and pages that never split a revision.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

import pytest

from policyd.errors import (
    InvalidRequestError,
)
from policyd.filters import RelationshipFilter
from policyd.store.base import ChangeKind, Store
from tests.store.schemas import (
    base_schema,
)
from tests.store.shorthand import delete, rel, touch


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


def test_changes_upto_stops_at_a_revision(store: Store) -> None:
    start = store.head_revision()
    r1 = store.write(touch("document:1#viewer@user:a"))
    r2 = store.write(touch("document:2#viewer@user:b"))
    r3 = store.write(delete("document:1#viewer@user:a"))
    assert [e.revision for e in store.changes(start, upto=r2)] == [r1, r2]
    assert [e.revision for e in store.changes(r1, upto=r2)] == [r2]
    assert store.changes(r1, upto=r1) == []
    assert [(e.revision, e.kind) for e in store.changes(r2, upto=r3)] == [(r3, ChangeKind.DELETE)]
