"""The decision cache: a write ends exactly the decisions that read where it lands.

Unit tests of ``DecisionCache``, the engine serving hits across writes that
cannot change them and recomputing those that can, and a property: over
random policies, data and write sequences, every answer with the cache on
equals the answer of an engine with no cache on the same store.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.engine.cache import DecisionCache, Dependencies
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate, SubjectRef
from policyd.store.memory import MemoryStore
from tests.clock import FakeClock
from tests.engine.queries import check, rel
from tests.engine.worlds import FRESH, OBJECT_IDS, World, possible_relationships, worlds

KEY = ("doc", "1", "view", "user", "ann", "")


def recorded(*reads: tuple[str, ...]) -> Dependencies:
    dependencies = Dependencies()
    for read in reads:
        dependencies.add(read)
    return dependencies


def test_a_change_drops_the_decisions_that_read_its_keys() -> None:
    cache = DecisionCache(10)
    cache.put(KEY, True, float("inf"), recorded(("doc", "1", "viewer")), cache.serial)
    other = ("doc", "2", "view", "user", "ann", "")
    cache.put(other, False, float("inf"), recorded(("doc", "2", "viewer")), cache.serial)
    cache.changed("doc", "1", "viewer", "user", "bob", "")
    assert cache.get(KEY, 0.0) is None
    assert cache.get(other, 0.0) is False
    assert cache.invalidated == 1


def test_a_reverse_read_is_dropped_by_a_change_to_its_subject() -> None:
    cache = DecisionCache(10)
    reads = recorded(("user", "ann", "", "group", "member"))
    cache.put(KEY, True, float("inf"), reads, cache.serial)
    cache.changed("group", "eng", "member", "user", "ann", "")
    assert cache.get(KEY, 0.0) is None


def test_a_moved_closure_drops_decisions_that_asked_for_the_objects_it_moved() -> None:
    cache = DecisionCache(10)
    other = ("doc", "2", "view", "user", "bob", "")
    cache.put(KEY, True, float("inf"), recorded(("group", "member", "eng", "^")), cache.serial)
    cache.put(other, True, float("inf"), recorded(("group", "member", "ops", "^")), cache.serial)
    cache.closure_changed("group", "member", ["eng", "eng-backend"])
    assert cache.get(KEY, 0.0) is None
    assert cache.get(other, 0.0) is True


def test_a_decision_computed_across_a_change_is_not_stored() -> None:
    cache = DecisionCache(10)
    serial = cache.serial
    cache.changed("doc", "9", "viewer", "user", "zed", "")
    cache.put(KEY, True, float("inf"), recorded(("doc", "1", "viewer")), serial)
    assert cache.get(KEY, 0.0) is None


def test_expired_entries_are_not_served() -> None:
    cache = DecisionCache(10)
    cache.put(KEY, True, 100.0, recorded(), cache.serial)
    assert cache.get(KEY, 99.0) is True
    assert cache.get(KEY, 100.0) is None


def test_a_full_cache_forgets_its_oldest_entries() -> None:
    cache = DecisionCache(20)
    keys = [(*KEY[:1], str(i), *KEY[2:]) for i in range(40)]
    for key in keys:
        cache.put(key, True, float("inf"), recorded(("doc", key[1], "viewer")), cache.serial)
    assert len(cache) <= 20
    assert cache.get(keys[-1], 0.0) is True
    assert cache.get(keys[0], 0.0) is None


POLICY = """
use expiration

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member | user with expiration
    relation banned: user
    permission view = viewer - banned
}
"""


def cached_engine(relationships: list[str], **options: object) -> Engine:
    engine = Engine(MemoryStore(**options), cache_capacity=1000)  # type: ignore[arg-type]
    engine.write_policy(POLICY)
    engine.import_relationships([rel(r) for r in relationships])
    return engine


def ask(engine: Engine, text: str) -> Permissionship:
    """Ask at minimize_latency, the consistency the cache serves most."""
    resource, _, rest = text.partition("#")
    permission, _, subject = rest.partition("@")
    type_name, _, rid = resource.partition(":")
    stype, _, sid = subject.partition(":")
    return engine.check(
        ObjectRef(type_name, rid), permission, SubjectRef(stype, sid)
    ).permissionship


def touch(engine: Engine, *texts: str) -> None:
    engine.write([RelationshipUpdate(Operation.TOUCH, rel(t)) for t in texts])


def test_a_decision_is_stored_the_second_time_it_is_asked() -> None:
    engine = cached_engine(["doc:1#viewer@user:ann"])
    for _ in range(2):  # the first miss only notes the question; the second stores it
        assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
        assert engine.cache.hits == 0
    assert len(engine.cache) == 1
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    assert engine.cache.hits == 1
    touch(engine, "doc:1#banned@user:ann")  # ends the entry; the next miss stores at once
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.NO_PERMISSION
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.NO_PERMISSION
    assert engine.cache.hits == 2


def test_the_questions_asked_once_are_bounded() -> None:
    cache = DecisionCache(5)
    for i in range(100):
        assert not cache.admit(("doc", str(i), "view", "user", "ann", ""))
    assert len(cache._asked) <= 10
    assert cache.admit(("doc", "99", "view", "user", "ann", ""))


def test_an_unrelated_write_keeps_the_decision() -> None:
    engine = cached_engine(["doc:1#viewer@user:ann"])
    for _ in range(2):  # asked before, so stored (DecisionCache.admit)
        assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    hits = engine.cache.hits
    touch(engine, "doc:2#viewer@user:bob")
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    assert engine.cache.hits == hits + 1


@pytest.mark.parametrize(
    ("write", "answer"),
    [
        ("doc:1#banned@user:ann", Permissionship.NO_PERMISSION),
        ("group:eng#member@user:ann", Permissionship.HAS_PERMISSION),
        ("group:core#member@user:ann", Permissionship.HAS_PERMISSION),
    ],
    ids=["ban", "join-the-group", "join-a-nested-group"],
)
def test_a_write_that_changes_the_answer_is_seen_at_once(
    write: str, answer: Permissionship
) -> None:
    start = ["doc:1#viewer@group:eng#member", "group:eng#member@group:core#member"]
    if "banned" in write:
        start.append("doc:1#viewer@user:ann")
    engine = cached_engine(start)
    before = ask(engine, "doc:1#view@user:ann")
    touch(engine, write)
    assert ask(engine, "doc:1#view@user:ann") is answer
    assert before is not answer


def test_unnesting_a_group_ends_decisions_that_went_through_it() -> None:
    engine = cached_engine(
        [
            "doc:1#viewer@group:eng#member",
            "group:eng#member@group:core#member",
            "group:core#member@user:ann",
        ]
    )
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    engine.write([RelationshipUpdate(Operation.DELETE, rel("group:eng#member@group:core#member"))])
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.NO_PERMISSION


def test_an_expiring_grant_ends_its_decision() -> None:
    clock = FakeClock()
    engine = cached_engine(["doc:1#viewer@user:ann[expiration:2099-01-01T00:00:00Z]"], clock=clock)
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    clock.now = 4_102_444_800.0  # 2100-01-01
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.NO_PERMISSION


def test_a_new_policy_ends_every_decision() -> None:
    engine = cached_engine(["doc:1#viewer@user:ann"])
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.HAS_PERMISSION
    engine.write_policy(POLICY.replace("viewer - banned", "banned"))
    assert ask(engine, "doc:1#view@user:ann") is Permissionship.NO_PERMISSION


def test_the_token_of_a_hit_is_the_current_revision() -> None:
    engine = cached_engine(["doc:1#viewer@user:ann"])
    ask(engine, "doc:1#view@user:ann")
    touch(engine, "doc:2#viewer@user:bob")
    result = check(engine, "doc:1#view@user:ann")
    assert engine.tokens.revision(result.token) == engine.store.head_revision()


# ---- property ----------------------------------------------------------------------------------


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(worlds(usersets=True), st.integers(0, 2**32))
def test_cached_answers_equal_uncached_ones_through_writes(world: World, seed: int) -> None:
    store = MemoryStore()
    cached = Engine(store, cache_capacity=10_000)
    cached.write_policy(world.spec.text())
    if world.relationships:
        cached.import_relationships(list(world.relationships))
    fresh = Engine(store, cache_capacity=0)
    pool = possible_relationships(world.spec)
    rng = random.Random(seed)
    questions = [
        (ObjectRef(t.name, rid), member, subject)
        for t in world.spec.types
        for member in t.members()
        for rid in OBJECT_IDS
        for subject in world.subjects
    ]
    problems: list[str] = []
    live = {r.key: r for r in world.relationships}
    for round_number in range(6):
        for resource, member, subject in questions:
            got = cached.check(resource, member, subject, consistency=Consistency())
            want = fresh.check(resource, member, subject, consistency=FRESH)
            if (got.permissionship, got.missing) != (want.permissionship, want.missing):
                problems.append(
                    f"round {round_number}: {resource}#{member}@{subject} cached "
                    f"{got.permissionship.value}, fresh {want.permissionship.value}"
                )
        # Delete some of what is there, add some of what could be: every write changes data.
        gone = rng.sample(sorted(live), k=min(len(live), rng.randint(0, 2)))
        added = [r for r in rng.sample(pool, k=min(len(pool), 2)) if r.key not in live]
        updates = [RelationshipUpdate(Operation.DELETE, live.pop(key)) for key in gone]
        updates += [
            RelationshipUpdate(Operation.TOUCH, r) for r in {r.key: r for r in added}.values()
        ]
        for r in added:
            live[r.key] = r
        if updates:
            cached.write(updates)
    assert not problems, "\n".join([*problems[:10], repr(world)])
