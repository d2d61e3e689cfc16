"""Where the shared SpiceDB conformance corpus lives, and how tests skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "conformance" / "spicedb"
PARSER_DIR = CORPUS / "parser"
INTEGRATION_DIR = CORPUS / "integration"

requires_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason=f"SpiceDB conformance corpus not found at {CORPUS} (../shared beside the repo)",
)


def parser_cases() -> list[Path]:
    """Every .zed input of the parser corpus, sorted (empty when the corpus is absent)."""
    return sorted(PARSER_DIR.glob("*.zed")) if PARSER_DIR.is_dir() else []


def integration_cases() -> list[Path]:
    """Every validation file of the integration corpus, sorted (empty when absent)."""
    return sorted(INTEGRATION_DIR.glob("*.yaml")) if INTEGRATION_DIR.is_dir() else []


def spicedb_rejects(path: Path) -> bool:
    """True when SpiceDB's expected parse tree for ``path`` holds an error node."""
    return "NodeTypeError" in path.with_name(path.name + ".expected").read_text(encoding="utf-8")
