"""Consistency: tokens, and which revision each mode reads (the "new enemy" problem)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyd.engine import Consistency, ConsistencyMode, Engine, Permissionship
from policyd.engine.consistency import decode_token, encode_token
from policyd.errors import InvalidRequestError, RevisionUnavailableError
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate, SubjectRef
from policyd.store.memory import MemoryStore
from tests.engine.conftest import rel

POLICY = """
definition user {}

definition doc {
    relation viewer: user
    permission view = viewer
}
"""
DOC = ObjectRef("doc", "1")
ALICE = SubjectRef("user", "alice")


def frozen_clock() -> float:
    """An engine clock that never moves, so the engine never refreshes its head by itself."""
    return 0.0


def grant(engine: Engine, text: str = "doc:1#viewer@user:alice") -> str:
    return engine.write([RelationshipUpdate(Operation.CREATE, rel(text))])


def revoke(engine: Engine, text: str = "doc:1#viewer@user:alice") -> str:
    return engine.write([RelationshipUpdate(Operation.DELETE, rel(text))])


def view(engine: Engine, consistency: Consistency | None = None) -> Permissionship:
    return engine.check(DOC, "view", ALICE, consistency=consistency).permissionship


@given(st.integers(min_value=0, max_value=2**63))
def test_token_round_trip(revision: int) -> None:
    token = encode_token(revision)
    assert decode_token(token) == revision
    assert token.isascii()


def test_result_carries_the_revision_and_its_token() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    token = grant(engine)
    result = engine.check(DOC, "view", ALICE, consistency=Consistency.fully_consistent())
    assert result.token == token
    assert decode_token(result.token) == result.revision


@pytest.mark.parametrize("use_index", [True, False], ids=["index", "store-reads"])
def test_at_least_as_fresh_sees_a_write_made_by_another_engine(use_index: bool) -> None:
    store = MemoryStore()
    reader = Engine(store, clock=frozen_clock, index=use_index)
    writer = Engine(store, index=use_index)
    writer.write_policy(POLICY)
    assert view(reader, Consistency.fully_consistent()) is Permissionship.NO_PERMISSION
    token = grant(writer)
    # The reader has not looked at the store since: minimize_latency may be stale…
    assert view(reader) is Permissionship.NO_PERMISSION
    # …but a request carrying the writer's token must see the write.
    assert view(reader, Consistency.at_least_as_fresh(token)) is Permissionship.HAS_PERMISSION


@pytest.mark.parametrize("use_index", [True, False], ids=["index", "store-reads"])
def test_fully_consistent_sees_another_engines_write(use_index: bool) -> None:
    store = MemoryStore()
    reader = Engine(store, clock=frozen_clock, index=use_index)
    writer = Engine(store, index=use_index)
    writer.write_policy(POLICY)
    grant(writer)
    assert view(reader, Consistency.fully_consistent()) is Permissionship.HAS_PERMISSION


@pytest.mark.parametrize("use_index", [True, False], ids=["index", "store-reads"])
def test_at_exact_snapshot_reads_the_old_revision(use_index: bool) -> None:
    engine = Engine(MemoryStore(), index=use_index)
    engine.write_policy(POLICY)
    granted = grant(engine)
    revoked = revoke(engine)
    assert view(engine, Consistency.at_exact_snapshot(granted)) is Permissionship.HAS_PERMISSION
    assert view(engine, Consistency.at_exact_snapshot(revoked)) is Permissionship.NO_PERMISSION
    assert view(engine, Consistency.at_least_as_fresh(granted)) is Permissionship.NO_PERMISSION
    old = engine.check(DOC, "view", ALICE, consistency=Consistency.at_exact_snapshot(granted))
    assert old.token == granted


@pytest.mark.parametrize(
    "consistency",
    [
        pytest.param(Consistency.at_least_as_fresh("garbage!"), id="fresh-garbage"),
        pytest.param(Consistency.at_exact_snapshot("garbage!"), id="snapshot-garbage"),
        pytest.param(Consistency.at_least_as_fresh("aGVsbG8"), id="not-ours"),
        pytest.param(Consistency.at_exact_snapshot("cGQxOi0x"), id="negative-revision"),
        pytest.param(Consistency(ConsistencyMode.AT_LEAST_AS_FRESH), id="fresh-without-token"),
        pytest.param(Consistency(ConsistencyMode.AT_EXACT_SNAPSHOT), id="snapshot-without-token"),
    ],
)
def test_malformed_token_names_the_field(consistency: Consistency) -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    with pytest.raises(InvalidRequestError) as raised:
        view(engine, consistency)
    assert raised.value.field == "consistency.token"


def test_token_from_the_future_is_refused() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    future = encode_token(engine.store.head_revision() + 100)
    with pytest.raises(RevisionUnavailableError) as raised:
        view(engine, Consistency.at_least_as_fresh(future))
    assert raised.value.field == "consistency.token"
