"""Writer.import_relationships and the snapshot exports: bulk loads, conflicts, key order.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from policyd.errors import (
    AlreadyExistsError,
)
from policyd.store.base import (
    ChangeKind,
    Store,
)
from tests.clock import FakeClock
from tests.store.shorthand import everything, rel, touch


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
