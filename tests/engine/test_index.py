"""The in-memory index: large slots keep exact sorted copies, and ListObjects pages over them."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.engine.index import SORTED_THRESHOLD, RelationshipIndex
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.store.memory import MemoryStore

POLICY = """
definition user {}
definition group { relation member: user }
definition doc {
    relation owner: user
    relation reader: group#member
    permission view = owner + reader
}
"""
FRESH = Consistency.fully_consistent()


def owned(doc: str, user: str = "alice") -> Relationship:
    return Relationship(ObjectRef("doc", doc), "owner", SubjectRef("user", user))


@settings(max_examples=60)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2 * SORTED_THRESHOLD)), max_size=80))
def test_sorted_copies_match_their_slots(ops: list[tuple[bool, int]]) -> None:
    index = RelationshipIndex()
    with index.lock:
        for i in range(SORTED_THRESHOLD + 10):
            index.add(owned(f"d{i:04d}"))
        for add, n in ops:
            (index.add if add else index.remove)(owned(f"d{n:04d}"))
    for key, ordered in index.sorted_reverse.items():
        slot = index.reverse[key]
        assert isinstance(slot, dict)
        assert ordered == sorted(slot)
    for key, slot in index.reverse.items():
        if isinstance(slot, dict) and len(slot) >= SORTED_THRESHOLD:
            assert key in index.sorted_reverse


def all_pages(engine: Engine, limit: int) -> list[str]:
    subject = SubjectRef("user", "alice")
    ids: list[str] = []
    cursor = None
    while True:
        page = engine.list_objects("doc", "view", subject, cursor=cursor, limit=limit)
        ids.extend(o.resource_id for o in page.objects)
        if page.cursor is None:
            return ids
        cursor = page.cursor


def test_list_objects_pages_in_order_over_large_slots() -> None:
    rng = random.Random(7)
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    mine = [f"d{i:04d}" for i in rng.sample(range(5000), 3 * SORTED_THRESHOLD)]
    shared = [f"d{i:04d}" for i in rng.sample(range(5000), 2 * SORTED_THRESHOLD)]
    engine.import_relationships(
        [
            *(owned(d) for d in mine),
            *(
                Relationship(ObjectRef("doc", d), "reader", SubjectRef("group", "eng", "member"))
                for d in shared
            ),
            Relationship(ObjectRef("group", "eng"), "member", SubjectRef("user", "alice")),
        ]
    )
    expected = sorted(set(mine) | set(shared))
    assert all_pages(engine, 37) == expected
    gone, new = mine[:50], [f"n{i:04d}" for i in range(60)]
    engine.write(
        [RelationshipUpdate(Operation.DELETE, owned(d)) for d in gone]
        + [RelationshipUpdate(Operation.TOUCH, owned(d)) for d in new]
    )
    expected = sorted((set(mine) - set(gone)) | set(shared) | set(new))
    assert all_pages(engine, 100) == expected
    listed = engine.list_objects("doc", "view", SubjectRef("user", "alice"), consistency=FRESH)
    assert [o.resource_id for o in listed.objects] == expected
