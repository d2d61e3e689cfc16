"""Expiry and Retention: expired relationships vanish at once, GC collects, holds keep it away.

Part of the Store contract: every backend must pass every test here, identically.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policyd.errors import (
    PreconditionFailedError,
    RevisionUnavailableError,
)
from policyd.filters import Precondition, RelationshipFilter
from policyd.store.base import Store
from tests.clock import FakeClock
from tests.store.shorthand import create, delete, everything, exists, rel, touch

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


# ---- garbage collection and holds ---------------------------------------------------------------


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


def test_each_revision_has_the_stamp_of_its_commit_until_collected(
    store: Store, clock: FakeClock
) -> None:
    r1 = store.write(touch("document:1#viewer@user:a"))
    clock.advance(1.5)
    r2 = store.write(touch("document:1#viewer@user:b"))
    s1, s2 = store.revision_stamp(r1), store.revision_stamp(r2)
    assert s1 is not None
    assert s2 is not None
    assert s2 - s1 == 1_500_000  # microseconds, from the store's clock
    assert store.revision_stamp(r2) == s2  # the same every time it is asked
    assert store.revision_stamp(r2 + 1) is None  # not made yet
    clock.advance(timedelta(hours=25).total_seconds())
    store.write(touch("document:2#viewer@user:c"))
    assert store.gc().oldest_revision > r1
    assert store.revision_stamp(r1) is None  # collected
