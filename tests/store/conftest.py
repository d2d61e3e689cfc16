"""Store fixtures: one ``store`` fixture over every backend (``backends.BACKENDS``), and a clock.

Each PostgreSQL store lives in its own fresh PostgreSQL schema, dropped
afterwards (``pg_dsn`` is in tests/conftest.py). Plain helpers live in plain
modules: ``backends``, ``clock``, ``schemas`` and ``shorthand``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from policyd.store.base import Store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore
from tests.clock import FakeClock
from tests.store.backends import BACKENDS, StoreFactory
from tests.store.schemas import POLICY_TEXT, base_schema


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def open_backend(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Open (or reopen: same file, same PostgreSQL schema) the backend's store."""
    opened: list[Store] = []
    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    memory: list[Store] = []

    def factory(**kwargs: object) -> Store:
        kwargs.setdefault("clock", clock)
        store: Store
        if backend == "memory":
            if not memory:
                memory.append(MemoryStore(**kwargs))  # type: ignore[arg-type]
            return memory[0]
        if backend == "sqlite-file":
            store = SqliteStore(tmp_path / "policyd.db", **kwargs)  # type: ignore[arg-type]
        elif backend == "sqlite-memory":
            if not memory:
                memory.append(SqliteStore(":memory:", **kwargs))  # type: ignore[arg-type]
            return memory[0]
        else:
            from policyd.store.postgres import PostgresStore

            dsn = request.getfixturevalue("pg_dsn")
            store = PostgresStore(dsn, schema_name=schema_name, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield factory
    for store in memory + opened:
        store.close()
    if backend == "postgres" and opened:
        from policyd.store.postgres import PostgresStore

        cleanup = PostgresStore(request.getfixturevalue("pg_dsn"), schema_name=schema_name)
        cleanup.drop()
        cleanup.close()


@pytest.fixture
def bare_store(open_backend: StoreFactory) -> Store:
    """A store of the parametrised backend with no policy yet."""
    return open_backend()


@pytest.fixture
def store(bare_store: Store) -> Store:
    """A store of the parametrised backend holding ``base_schema``."""
    bare_store.write_policy(POLICY_TEXT, base_schema())
    return bare_store
