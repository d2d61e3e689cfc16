"""Consistency: tokens, and which revision each mode reads (the "new enemy" problem)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from policyd.consistency import Consistency, ConsistencyMode
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.errors import InvalidRequestError, RevisionUnavailableError
from policyd.relationship import ObjectRef, Operation, RelationshipUpdate, SubjectRef
from policyd.store.memory import MemoryStore
from tests.engine.queries import rel

POLICY = """
definition user {}

definition doc {
    relation viewer: user
    permission view = viewer
}
"""
DOC = ObjectRef("doc", "1")
ALICE = SubjectRef("user", "alice")
FRESH_READ = Consistency.fully_consistent()


def frozen_clock() -> float:
    """An engine clock that never moves, so the engine never refreshes its head by itself."""
    return 0.0


def grant(engine: Engine, text: str = "doc:1#viewer@user:alice") -> str:
    return engine.write([RelationshipUpdate(Operation.CREATE, rel(text))])


def revoke(engine: Engine, text: str = "doc:1#viewer@user:alice") -> str:
    return engine.write([RelationshipUpdate(Operation.DELETE, rel(text))])


def view(engine: Engine, consistency: Consistency | None = None) -> Permissionship:
    return engine.check(DOC, "view", ALICE, consistency=consistency).permissionship


def test_result_carries_the_token_of_its_revision() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    token = grant(engine)
    result = engine.check(DOC, "view", ALICE, consistency=Consistency.fully_consistent())
    assert result.token == token
    assert engine.tokens.revision(result.token) == engine.store.head_revision()


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
    future = engine.tokens.token(engine.store.head_revision() + 100)
    with pytest.raises(RevisionUnavailableError) as raised:
        view(engine, Consistency.at_least_as_fresh(future))
    assert raised.value.field == "consistency.token"


# ---- tokens and cursors belong to one store ----------------------------------------------------


def _two_stores_at_the_same_revision() -> tuple[Engine, Engine, str]:
    """Two engines over two stores, each with a write; the token is the first one's."""
    first, second = Engine(MemoryStore()), Engine(MemoryStore())
    for engine in (first, second):
        engine.write_policy(POLICY)
    token = grant(first)
    grant(second)
    return first, second, token


@pytest.mark.parametrize(
    "mode",
    [Consistency.at_least_as_fresh, Consistency.at_exact_snapshot],
    ids=["at-least-as-fresh", "at-exact-snapshot"],
)
def test_a_token_from_another_store_is_refused(mode: Any) -> None:
    first, second, token = _two_stores_at_the_same_revision()
    assert view(first, mode(token)) is Permissionship.HAS_PERMISSION
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        view(second, mode(token))
    assert raised.value.field == "consistency.token"


def test_a_list_cursor_from_another_store_is_refused() -> None:
    first, second, _ = _two_stores_at_the_same_revision()
    for engine in (first, second):
        grant(engine, "doc:2#viewer@user:alice")
    page = first.list_objects("doc", "view", ALICE, consistency=FRESH_READ, limit=1)
    assert page.cursor is not None
    with pytest.raises(RevisionUnavailableError, match="another store") as raised:
        second.list_objects("doc", "view", ALICE, cursor=page.cursor, limit=1)
    assert raised.value.field == "cursor"


def _old_style(text: str) -> str:
    """A token of the old form: base64 of ``pd1:`` and a revision as text."""
    return base64.urlsafe_b64encode(f"pd1:{text}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_old_style("1"), id="old-style"),
        pytest.param(_old_style("1_0"), id="underscore-digits"),
        pytest.param(_old_style(" 1 "), id="spaces"),
        pytest.param(_old_style("\u0661"), id="arabic-indic-digit"),
        pytest.param(_old_style("+1"), id="plus-sign"),
        pytest.param("1_0", id="bare-text"),
    ],
)
def test_tokens_that_only_look_like_revisions_are_refused(token: str) -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    grant(engine)
    with pytest.raises(InvalidRequestError) as raised:
        view(engine, Consistency.at_least_as_fresh(token))
    assert raised.value.field == "consistency.token"


def test_a_tampered_token_is_refused() -> None:
    engine = Engine(MemoryStore())
    engine.write_policy(POLICY)
    token = grant(engine)
    for i, ch in enumerate(token):
        other = "A" if ch != "A" else "B"
        tampered = token[:i] + other + token[i + 1 :]
        with pytest.raises(InvalidRequestError) as raised:
            view(engine, Consistency.at_exact_snapshot(tampered))
        assert raised.value.field == "consistency.token", tampered
