"""Package validationfile reads SpiceDB validation files: a schema, relationships, assertions.

Policy authors test policies the way they do with ``zed validate``: one YAML
file holds ``schema`` (or ``schemaFile``), ``relationships`` (one per line),
``assertions`` (``assertTrue`` / ``assertFalse`` / ``assertCaveated``) and
``validation`` (expected relations). Every problem is reported with the file,
line and column where it sits in the YAML, all at once.

The expected-relations paths are checked as ``zed validate`` does (``membership``).
"""

from __future__ import annotations

from policyd.validationfile.loading import (
    Assertion,
    AssertionKind,
    ExpectedRelations,
    ExpectedSubject,
    ValidationFile,
    load_validation_files,
)
from policyd.validationfile.running import Failure, load_engine, run_validation_file

__all__ = [
    "Assertion",
    "AssertionKind",
    "ExpectedRelations",
    "ExpectedSubject",
    "Failure",
    "ValidationFile",
    "load_engine",
    "load_validation_files",
    "run_validation_file",
]
