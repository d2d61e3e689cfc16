"""A RuleBasedStateMachine drives a store and a dict model with the same writes; they must agree."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from policyd.errors import AlreadyExistsError
from policyd.filters import RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipKey,
    RelationshipUpdate,
    SubjectRef,
)
from policyd.store.base import ChangeKind, Store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.store.schemas import POLICY_TEXT, base_schema

Model = dict[RelationshipKey, Relationship]

SHAPES = [
    ("viewer", "u0", None),
    ("viewer", "u1", None),
    ("viewer", "*", None),
    ("viewer", "u0", "only_weekdays"),
    ("owner", "u0", None),
    ("owner", "u1", None),
]


def _relationship(resource_id: str, shape: tuple[str, str, str | None]) -> Relationship:
    relation, subject_id, caveat = shape
    return Relationship(
        ObjectRef("document", resource_id),
        relation,
        SubjectRef("user", subject_id),
        caveat,
        {"day": "mon"} if caveat else {},
    )


relationships = st.builds(
    _relationship, st.sampled_from(["d0", "d1", "d2"]), st.sampled_from(SHAPES)
)
updates = st.builds(RelationshipUpdate, st.sampled_from(list(Operation)), relationships)
batches = st.lists(updates, max_size=6, unique_by=lambda u: u.relationship.key)
filters = st.builds(
    RelationshipFilter,
    resource_type=st.just("document"),
    resource_id=st.none() | st.sampled_from(["d0", "d1"]),
    relation=st.none() | st.sampled_from(["viewer", "owner"]),
    subject_id=st.none() | st.sampled_from(["u0", "*"]),
)


def _same(a: Relationship, b: Relationship) -> bool:
    return str(a) == str(b)


class StoreMachine(RuleBasedStateMachine):
    """Writes, deletes and reads against the store and the model."""

    open_store: Callable[[], Store] = MemoryStore

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).open_store()
        self.start = self.store.write_policy(POLICY_TEXT, base_schema())
        self.model: Model = {}
        self.history: dict[int, Model] = {self.start: {}}

    def teardown(self) -> None:
        drop = getattr(self.store, "drop", None)
        if drop is not None:
            drop()
        self.store.close()

    def _commit(self, revision: int) -> None:
        assert revision > max(self.history)
        self.history[revision] = dict(self.model)

    @rule(batch=batches)
    def write(self, batch: list[RelationshipUpdate]) -> None:
        clash = any(
            u.operation is Operation.CREATE and u.relationship.key in self.model for u in batch
        )
        if clash:
            with pytest.raises(AlreadyExistsError):
                self.store.write(batch)
            return
        revision = self.store.write(batch)
        for u in batch:
            if u.operation is Operation.DELETE:
                self.model.pop(u.relationship.key, None)
            else:
                self.model[u.relationship.key] = u.relationship
        self._commit(revision)

    @rule(flt=filters, limit=st.none() | st.integers(1, 3))
    def delete(self, flt: RelationshipFilter, limit: int | None) -> None:
        matched = sorted(k for k, r in self.model.items() if flt.matches(r))
        if limit is not None:
            matched = matched[:limit]
        revision, count = self.store.delete(flt, limit)
        assert count == len(matched)
        if not matched:  # nothing deleted: no revision, the head is returned
            assert revision == max(self.history)
            return
        for key in matched:
            del self.model[key]
        self._commit(revision)

    @precondition(lambda self: len(self.history) > 1)
    @rule(data=st.data())
    def read_an_old_revision(self, data: st.DataObject) -> None:
        revision = data.draw(st.sampled_from(sorted(self.history)))
        expected = sorted(self.history[revision].values(), key=lambda r: r.key)
        snapshot = self.store.snapshot(revision)
        page = snapshot.read(RelationshipFilter(), limit=100)
        assert [str(r) for r in page.relationships] == [str(r) for r in expected]
        for key, want in self.history[revision].items():
            got = snapshot.get(key)
            assert got is not None
            assert _same(got, want)

    @rule(ids=st.sets(st.sampled_from(["d0", "d1", "d2"])), relation=st.sampled_from(["viewer"]))
    def subjects_of(self, ids: set[str], relation: str) -> None:
        found = self.store.snapshot().subjects_of("document", ids, relation)
        expected = sorted(
            (r for r in self.model.values() if r.resource.id in ids and r.relation == relation),
            key=lambda r: r.key,
        )
        assert [str(r) for r in found] == [str(r) for r in expected]

    @rule(ids=st.sets(st.sampled_from(["u0", "u1", "*"])))
    def resources_of(self, ids: set[str]) -> None:
        found = self.store.snapshot().resources_of(
            "document", "viewer", subject_type="user", subject_ids=ids
        )
        expected = sorted(
            (r for r in self.model.values() if r.relation == "viewer" and r.subject.id in ids),
            key=lambda r: (r.subject.id, r.resource.id),
        )
        assert [str(r) for r in found] == [str(r) for r in expected]

    @invariant()
    def change_log_replays_to_the_model(self) -> None:
        replayed: Model = {}
        for event in self.store.changes(self.start, limit=1000):
            assert event.relationship is not None
            if event.kind is ChangeKind.TOUCH:
                replayed[event.relationship.key] = event.relationship
            else:
                assert event.kind is ChangeKind.DELETE
                del replayed[event.relationship.key]
        assert {k: str(r) for k, r in replayed.items()} == {
            k: str(r) for k, r in self.model.items()
        }
        assert self.store.head_revision() == max(self.history)


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _run(open_store: Callable[[], Store], config: settings = SETTINGS) -> None:
    machine: type[StoreMachine] = type(
        "Machine", (StoreMachine,), {"open_store": staticmethod(open_store)}
    )
    run_state_machine_as_test(machine, settings=config)


def test_memory_store_matches_the_model() -> None:
    _run(MemoryStore)


def test_sqlite_file_store_matches_the_model() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run(lambda: SqliteStore(Path(tmp) / f"{uuid.uuid4().hex}.db", synchronous="OFF"))


@pytest.mark.postgres
def test_postgres_store_matches_the_model(pg_dsn: str) -> None:
    from policyd.store.postgres import PostgresStore

    def open_store() -> Store:
        return PostgresStore(pg_dsn, schema_name=f"m_{uuid.uuid4().hex[:12]}")

    _run(open_store, settings(SETTINGS, max_examples=25))
