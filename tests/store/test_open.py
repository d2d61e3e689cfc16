"""open_store picks backends by URL, lazily; the store package stays inside its layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policyd.errors import InvalidRequestError
from policyd.store import open_store
from policyd.store.memory import MemoryStore
from policyd.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryStore),
        ("sqlite://:memory:", SqliteStore),
        ("sqlite:///:memory:", SqliteStore),
    ],
    ids=["memory", "sqlite-memory", "sqlite-memory-slashes"],
)
def test_open_store_by_url(url: str, kind: type) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, kind)
        assert store.head_revision() == 0
    finally:
        store.close()


@pytest.mark.parametrize("spelling", ["sqlite://{path}", "{path}"], ids=["url", "bare-path"])
def test_open_sqlite_file(tmp_path: Path, spelling: str) -> None:
    path = tmp_path / "db" / "policyd.db"
    path.parent.mkdir()
    store = open_store(spelling.format(path=path))
    store.close()
    assert path.exists()


def test_a_relative_bare_path_is_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("authz.db")
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()
    assert (tmp_path / "authz.db").exists()


def test_unknown_url_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="unknown store URL"):
        open_store("mysql://localhost/x")


def test_importing_the_store_loads_no_backend_library() -> None:
    code = (
        "import sys, policyd, policyd.store; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool', 'grpc')"
        " or m.startswith(('policyd.dsl', 'policyd.engine', 'policyd.store.postgres'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_store_modules_import_only_lower_layers() -> None:
    allowed = (
        "policyd.errors",
        "policyd.relationship",
        "policyd.filters",
        "policyd.tokens",
        "policyd.caveats",  # row 1 of STYLE.md's layers: contexts are checked on write
        "policyd.schema",
        "policyd.store",
    )
    for path in (ROOT / "policyd" / "store").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            is_import = len(words) >= 2 and words[0] in ("import", "from")
            if is_import and words[1].startswith("policyd"):
                assert words[1].startswith(allowed), f"{path.name}: {line}"


@pytest.mark.parametrize("name", ["t\u00e9st", "policyd\n", "a-b", "a b", "", "x" * 64], ids=repr)
def test_postgres_schema_names_are_plain_ascii(name: str) -> None:
    from policyd.store.postgres import PostgresStore

    with pytest.raises(InvalidRequestError) as raised:
        PostgresStore("postgresql://127.0.0.1:1/none", schema_name=name)
    assert raised.value.field == "schema"
