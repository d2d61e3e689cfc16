"""Engine fixtures: an engine over a real store holding a policy and shuffled relationships.

Relationships are written in a shuffled order (seeded by the test's id, so a
failure replays) because nothing the engine answers may depend on write order.
Queries are written as SpiceDB text: ``doc:1#view@user:alice``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Protocol

import pytest

from policyd.engine import CheckRequest, CheckResult, Consistency, Engine
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_relationship,
    parse_subject,
)
from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from tests.store.clock import FakeClock

FRESH = Consistency.fully_consistent()


def rel(text: str) -> Relationship:
    """A relationship from SpiceDB text, caveat and expiration included."""
    return parse_relationship(text)


def query(text: str) -> tuple[ObjectRef, str, SubjectRef]:
    """``resource#permission@subject`` split into what Check takes."""
    parsed = parse_relationship(text)
    return parsed.resource, parsed.relation, parsed.subject


def subject(text: str) -> SubjectRef:
    """``type:id`` or ``type:id#relation``."""
    return parse_subject(text)


def request(text: str, context: Mapping[str, Any] | None = None) -> CheckRequest:
    """A BatchCheck item from ``resource#permission@subject``."""
    resource, permission, subject_ref = query(text)
    return CheckRequest(resource, permission, subject_ref, dict(context or {}))


def check(engine: Engine, text: str, context: Mapping[str, Any] | None = None) -> CheckResult:
    """Check ``resource#permission@subject`` at the newest revision."""
    resource, permission, subject = query(text)
    return engine.check(resource, permission, subject, context=context, consistency=FRESH)


class MakeEngine(Protocol):
    def __call__(
        self, policy: str, relationships: list[str] | tuple[str, ...] = (), **kwargs: Any
    ) -> Engine: ...


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand, for stores and expirations."""
    return FakeClock()


@pytest.fixture
def shuffler(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded by the test id: shuffled, but the same on every run."""
    return random.Random(request.node.nodeid)


@pytest.fixture(params=[True, False], ids=["index", "store-reads"])
def use_index(request: pytest.FixtureRequest) -> bool:
    """Each engine test runs on both read paths: the in-memory index and store reads."""
    value: bool = request.param
    return value


@pytest.fixture
def make_engine(shuffler: random.Random, use_index: bool) -> MakeEngine:
    """Build an engine over a store (MemoryStore unless ``store=`` is given).

    The relationships are shuffled, then written in one import or in one write
    batch, chosen by the seed, so both write paths are exercised.
    """

    def build(
        policy: str,
        relationships: list[str] | tuple[str, ...] = (),
        *,
        store: Store | None = None,
        **engine_options: Any,
    ) -> Engine:
        engine_options.setdefault("index", use_index)
        engine = Engine(store if store is not None else MemoryStore(), **engine_options)
        engine.write_policy(policy)
        parsed = [rel(text) for text in relationships]
        shuffler.shuffle(parsed)
        if parsed and shuffler.random() < 0.5:
            engine.import_relationships(parsed)
        elif parsed:
            engine.write([RelationshipUpdate(Operation.CREATE, r) for r in parsed])
        return engine

    return build
