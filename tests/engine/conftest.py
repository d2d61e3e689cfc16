"""Engine fixtures: an engine over a real store holding a policy and shuffled relationships.

Relationships are written in a shuffled order (seeded by the test's id, so a
failure replays) because nothing the engine answers may depend on write order.
The helpers that write queries as SpiceDB text live in tests/engine/queries.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from policyd.engine import Engine
from policyd.relationship import (
    Operation,
    RelationshipUpdate,
)
from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from tests.clock import FakeClock
from tests.engine.queries import MakeEngine, rel


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
