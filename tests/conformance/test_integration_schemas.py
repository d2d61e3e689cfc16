"""SpiceDB's integration corpus: every schema compiles and every validation file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.cli import main
from policyd.validationfile import load_validation_files
from tests.corpus import integration_cases, requires_corpus

pytestmark = requires_corpus

CASES = integration_cases()


def test_corpus_has_73_files() -> None:
    assert len(CASES) == 73


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_schema_compiles_and_file_loads(path: Path) -> None:
    files = load_validation_files(path)
    assert files
    for loaded in files:
        assert loaded.policy.schema.definitions
        assert loaded.relationships or loaded.assertions or loaded.expected


@pytest.mark.parametrize("path", CASES[:5], ids=lambda p: p.stem)
def test_validate_command_reports_ok(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok" in capsys.readouterr().out
