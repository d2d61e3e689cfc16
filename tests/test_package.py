"""The package's public face: every name in ``__all__`` loads, lazily, and the docstring runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import policyd


@pytest.mark.parametrize("name", sorted(policyd.__all__))
def test_every_public_name_loads(name: str) -> None:
    assert getattr(policyd, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        policyd.Nothing  # noqa: B018


def test_import_policyd_stays_light() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, policyd; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = {"grpc", "psycopg", "cel", "cel_expr_python", "lark", "sqlite_utils"}
    assert heavy.isdisjoint(loaded)


def test_the_docstring_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = policyd.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\n\nor, against a server", 1)[0]
    code = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "policyd.__doc__", "exec"), {})
    assert (tmp_path / "authz.db").exists()
