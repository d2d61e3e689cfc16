"""Fixtures that start ``policyd serve`` subprocesses (``server.ServerProcess``) and stop them."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import POLICY_FILE, ServerFactory, ServerProcess


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start ``policyd serve`` subprocesses (SQLite in tmp_path unless told otherwise)."""
    started: list[ServerProcess] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> ServerProcess:
        args = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--grace", "5"]
        if "--store" not in extra and "--db" not in extra:
            args += ["--db", str(tmp_path / "policyd.db")]
        server = ServerProcess([*args, *extra], tmp_path, env)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.terminate(timeout=15)


@pytest.fixture
def server(start_server: ServerFactory) -> ServerProcess:
    """A server holding the example atproto policy (written with --policy)."""
    return start_server("--policy", str(POLICY_FILE))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL for a fresh PostgreSQL schema, dropped afterwards (skips without PostgreSQL)."""
    dsn: str = request.getfixturevalue("pg_dsn")
    from policyd.store.postgres import PostgresStore

    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in dsn else "?"
    yield f"{dsn}{separator}schema={schema}"
    cleanup = PostgresStore(dsn, schema_name=schema)
    cleanup.drop()
    cleanup.close()
