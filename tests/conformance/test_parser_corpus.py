"""SpiceDB's parser corpus: `policyd fmt` accepts what SpiceDB parses, rejects the rest, located."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from policyd.cli import main
from tests.corpus import parser_cases, requires_corpus, spicedb_rejects

pytestmark = requires_corpus

CASES = parser_cases()
ACCEPTED = [p for p in CASES if not spicedb_rejects(p)]
REJECTED = [p for p in CASES if spicedb_rejects(p)]
LOCATED = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): [a-z-]+: \S", re.MULTILINE)


def test_corpus_has_the_expected_split() -> None:
    assert (len(ACCEPTED), len(REJECTED)) == (36, 29)


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_fmt_accepts_what_spicedb_parses(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.strip() or not path.read_text().strip()


@pytest.mark.parametrize("path", REJECTED, ids=lambda p: p.stem)
def test_fmt_rejects_what_spicedb_rejects(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    match = LOCATED.search(err)
    assert match, err
    assert match.group("file") == str(path)
    line, col = int(match.group("line")), int(match.group("col"))
    lines = path.read_text().split("\n")
    assert 1 <= line <= len(lines)
    assert 1 <= col <= len(lines[line - 1]) + 1


def test_fmt_process_never_prints_a_traceback() -> None:
    """The real command, run as a user would, over the whole corpus."""
    result = subprocess.run(
        [sys.executable, "-m", "policyd.cli", "fmt", *map(str, REJECTED)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(LOCATED.findall(result.stderr)) >= len(REJECTED)
