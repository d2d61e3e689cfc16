"""The in-memory index: every read equals a dict model through writes, rebuilds and snapshots.

The index keeps what it was built with in arrays and tries and what changed
since in dicts, so each property runs writes over a built base, rebuilds it
(folding the changes in), and saves and reads back snapshots, with thresholds
lowered so that tries and ascending runs are exercised on small data.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyd.consistency import Consistency
from policyd.engine import Engine, index
from policyd.engine.index import Edge, RelationshipIndex, build
from policyd.engine.snapshot import read_snapshot, write_snapshot
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_relationship,
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
IDENTITY = b"\x01" * 16

# Ids whose string order differs from their arrival and numeric order.
DOCS = ["d9", "d10", "d1", "d0", "a", "z", "d2"]
USERS = ["u2", "u10", "u1", "*"]
GROUPS = ["g1", "g0"]
KINDS = [
    ("doc", "owner", "user", ""),
    ("doc", "reader", "group", "member"),
    ("group", "member", "user", ""),
]
CAVEATED = Edge("tier", {"level": 2}, None)

Key = tuple[str, str, str, str, str, str]


def key_of(kind: int, resource: int, subject: int) -> Key:
    rtype, relation, stype, srel = KINDS[kind]
    rids = DOCS if rtype == "doc" else GROUPS
    sids = USERS if stype == "user" else GROUPS
    return (rtype, rids[resource % len(rids)], relation, stype, sids[subject % len(sids)], srel)


step = st.one_of(
    st.tuples(
        st.sampled_from(["put", "put", "drop"]),
        st.integers(0, 2),
        st.integers(0, 6),
        st.integers(0, 3),
        st.booleans(),
    ),
    st.tuples(
        st.sampled_from(["rebuild", "snapshot"]), st.just(0), st.just(0), st.just(0), st.just(False)
    ),
)


def assert_matches(idx: RelationshipIndex, model: dict[Key, bool | Edge]) -> None:
    """Every read of the index equals the model's answer."""
    assert idx.size == len(model)
    for kind in range(len(KINDS)):
        rtype, relation, stype, srel = KINDS[kind]
        for resource in range(7):
            rid = key_of(kind, resource, 0)[1]
            expected = {
                k[4]: v
                for k, v in model.items()
                if k[:4] == (rtype, rid, relation, stype) and k[5] == srel
            }
            assert dict(idx.subject_edges(rtype, rid, relation, stype, srel, 0.0)) == expected
            small, runs = idx.subject_id_runs(rtype, rid, relation, stype, srel)
            assert_runs(small, runs, set(expected))
            for subject in range(4):
                k = key_of(kind, resource, subject)
                assert idx.edge(*k, 0.0) == model.get(k, False)
        for subject in range(4):
            sid = key_of(kind, 0, subject)[4]
            expected = {
                k[1]: v
                for k, v in model.items()
                if k[0] == rtype and k[2:] == (relation, stype, sid, srel)
            }
            assert dict(idx.resource_edges(rtype, relation, stype, sid, srel, 0.0)) == expected
            small, runs = idx.resource_id_runs(rtype, relation, stype, [sid], srel or None)
            assert_runs(small, runs, set(expected))
    with idx.lock:
        rows = {row[:6]: row[6] for row in idx.rows()}
    assert rows == {k: (v.caveat_name if isinstance(v, Edge) else None) for k, v in model.items()}


def assert_runs(small: set[str], runs: Sequence[Sequence[str]], expected: set[str]) -> None:
    """Small ids and ascending runs together hold exactly the expected ids."""
    found = set(small)
    for run in runs:
        ids = list(run)
        assert ids == sorted(ids)
        found.update(ids)
    assert found == expected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(step, max_size=60),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6), st.integers(0, 3)), max_size=40),
)
def test_reads_equal_a_model_through_writes_rebuilds_and_snapshots(
    steps: list[tuple[str, int, int, int, bool]], initial: list[tuple[int, int, int]]
) -> None:
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as tmp:
        patch.setattr(index, "COMPACT_NAMES", 3)
        patch.setattr(index, "SORTED_THRESHOLD", 2)
        model: dict[Key, bool | Edge] = {key_of(*i): True for i in initial}
        idx = RelationshipIndex()
        idx.replace(build([(*k, None, None, None) for k in model]), 1)
        assert_matches(idx, model)
        for action, kind, resource, subject, caveated in steps:
            with idx.lock:
                if action == "put":
                    k = key_of(kind, resource, subject)
                    model[k] = CAVEATED if caveated else True
                    idx.put(*k, model[k])
                elif action == "drop":
                    k = key_of(kind, resource, subject)
                    model.pop(k, None)
                    idx.drop(*k)
            if action == "rebuild":
                idx.compact()
            elif action == "snapshot":
                path = Path(tmp) / "index.snapshot"
                write_snapshot(idx, IDENTITY, path, lambda _: 1)
                loaded = read_snapshot(path, IDENTITY)
                idx = RelationshipIndex()
                idx.replace(loaded.built, loaded.revision)
            assert_matches(idx, model)


def test_ids_are_numbered_in_string_order_in_a_trie_or_a_dict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = sorted(f"did:plc:{random.Random(3).random()}{i}" for i in range(50))
    for threshold in (10, 1000):
        monkeypatch.setattr(index, "COMPACT_NAMES", threshold)
        names = index.Names.of(ids)
        assert names.compact == (threshold == 10)
        assert [names.name(i) for i in range(len(ids))] == ids
        assert [names.number(i) for i in ids] == list(range(len(ids)))
        assert names.number("did:plc:unknown") == -1
        assert names.intern("a-later-id") == len(ids)
        assert names.name(len(ids)) == "a-later-id"
        assert names.later() == ["a-later-id"]


def owned(doc: str, user: str = "alice") -> Relationship:
    return Relationship(ObjectRef("doc", doc), "owner", SubjectRef("user", user))


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


@pytest.mark.parametrize("rebuilt", [False, True], ids=["changes-in-dicts", "built-into-arrays"])
def test_list_objects_pages_in_order_over_large_rows(rebuilt: bool) -> None:
    rng = random.Random(7)
    store = MemoryStore()
    engine = Engine(store)
    engine.write_policy(POLICY)
    mine = [f"d{i:04d}" for i in rng.sample(range(5000), 3 * index.SORTED_THRESHOLD)]
    shared = [f"d{i:04d}" for i in rng.sample(range(5000), 2 * index.SORTED_THRESHOLD)]
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
    if rebuilt:
        engine = Engine(store)  # built from the store: the large rows are array runs
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


def owners(count: int) -> list[Relationship]:
    """``doc:iN#owner@user:uN`` for N below ``count``."""
    return [parse_relationship(f"doc:i{i}#owner@user:u{i}") for i in range(count)]


def test_a_large_import_goes_into_rebuilt_arrays_and_ends_the_cached_decisions() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    engine.write([RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:a#owner@user:u0"))])
    carol = SubjectRef("user", "carol")
    assert not engine.check(ObjectRef("doc", "a"), "view", carol).allowed  # now cached
    imported = owners(50)
    engine.import_relationships([*imported, parse_relationship("doc:a#owner@user:carol")])
    idx = engine._index
    assert idx is not None
    assert idx.changes() == 0  # in the arrays, not the change overlay
    assert idx.size == 52
    assert engine.check(ObjectRef("doc", "a"), "view", carol).allowed
    assert engine.check(ObjectRef("doc", "i7"), "view", SubjectRef("user", "u7")).allowed


def test_a_small_import_is_put_into_the_overlay() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    engine.import_relationships(owners(100))
    engine.import_relationships([parse_relationship("doc:i1#owner@user:late")])
    idx = engine._index
    assert idx is not None
    assert idx.changes() == 1
    assert engine.check(ObjectRef("doc", "i1"), "view", SubjectRef("user", "late")).allowed


def test_a_large_change_applied_from_the_log_is_compacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "COMPACT_MIN_CHANGES", 10)
    store = MemoryStore()
    follower = Engine(store)
    writer = Engine(store, index=False)  # another server: its writes reach the follower's log
    writer.write_policy(POLICY)
    writer.import_relationships(owners(40))
    assert follower.check(
        ObjectRef("doc", "i3"), "view", SubjectRef("user", "u3"), consistency=FRESH
    ).allowed
    idx = follower._index
    assert idx is not None
    assert idx.changes() == 0
    assert idx.size == 40
    writer.write([RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:i3#owner@user:u9"))])
    assert follower.check(
        ObjectRef("doc", "i3"), "view", SubjectRef("user", "u9"), consistency=FRESH
    ).allowed
    assert idx.changes() == 1  # below the share that is worth a rebuild
