"""Group closures: incremental maintenance equals a from-scratch build, and checks use them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.engine.group_closure import Closures, GroupClosure
from policyd.engine.index import RelationshipIndex
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.store.memory import MemoryStore

GROUPS = [f"g{i}" for i in range(6)]
edges = st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS))
operations = st.lists(st.tuples(st.booleans(), edges), max_size=40)


def from_scratch(pairs: set[tuple[str, str]]) -> GroupClosure:
    closure = GroupClosure("group", "member")
    closure.build(sorted(pairs))
    return closure


@settings(max_examples=200, deadline=None)
@given(operations)
def test_incremental_closure_equals_a_fresh_build(ops: list[tuple[bool, tuple[str, str]]]) -> None:
    live: set[tuple[str, str]] = set()
    closure = GroupClosure("group", "member")
    for add, (container, member) in ops:
        if add:
            closure.add(container, member)
            live.add((container, member))
        else:
            closure.remove(container, member)
            live.discard((container, member))
        assert closure.ancestors == from_scratch(live).ancestors


def test_member_reachable_two_ways_stays_when_one_goes() -> None:
    closure = GroupClosure("group", "member")
    closure.build([("top", "left"), ("top", "right"), ("left", "bottom"), ("right", "bottom")])
    closure.remove("left", "bottom")
    assert closure.contains("top", "bottom")
    closure.remove("right", "bottom")
    assert not closure.contains("top", "bottom")


def nested(container: str, member: str) -> Relationship:
    return Relationship(
        ObjectRef("group", container), "member", SubjectRef("group", member, "member")
    )


def test_index_listeners_keep_a_built_closure_current() -> None:
    index = RelationshipIndex()
    closures = Closures(index)
    with index.lock:
        index.add(nested("aaa", "bbb"))
    closure = closures.get("group", "member")
    assert closure.contains("aaa", "bbb")
    with index.lock:
        index.add(nested("bbb", "ccc"))
    assert closure.contains("aaa", "ccc")
    with index.lock:
        index.remove(nested("aaa", "bbb"))
    assert not closure.contains("aaa", "ccc")
    assert closure.contains("bbb", "ccc")


POLICY = """
definition user {}
definition group { relation member: user | group#member }
definition doc { relation viewer: group#member
    permission view = viewer }
"""


def test_deep_nesting_is_answered_through_writes_and_deletes() -> None:
    store = MemoryStore()
    engine = Engine(store, max_depth=5)
    engine.write_policy(POLICY)
    depth = 100
    chain = [nested(f"g{i}", f"g{i + 1}") for i in range(depth)]
    engine.import_relationships(
        [
            *chain,
            Relationship(ObjectRef("group", f"g{depth}"), "member", SubjectRef("user", "deep")),
            Relationship(ObjectRef("doc", "top"), "viewer", SubjectRef("group", "g0", "member")),
        ]
    )
    fresh = Consistency.fully_consistent()
    deep = SubjectRef("user", "deep")
    # max_depth=5 would stop a walk; the closure answers at depth 100 in one lookup.
    assert engine.check(ObjectRef("doc", "top"), "view", deep, consistency=fresh).allowed
    token = engine.write([RelationshipUpdate(Operation.DELETE, chain[50])])
    after = Consistency.at_least_as_fresh(token)
    assert not engine.check(ObjectRef("doc", "top"), "view", deep, consistency=after).allowed
    assert engine.check(ObjectRef("group", "g51"), "member", deep, consistency=after).allowed
