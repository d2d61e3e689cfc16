"""The scenario (scenario.py) through the official ``authzed`` client: policyd answers as SpiceDB.

Both servers get the same calls; every answer must be equal once ZedTokens and
cursors (opaque on both sides) are placeholders, except the deliberate
differences in ``DIFFERENCES``, each with its reason. SpiceDB runs embedded
(spicedb.py); without it the comparison skips locally and fails in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from policyd.api.server import PolicydServer, ServerConfig
from policyd.engine import Engine
from policyd.store import open_store
from policyd.store.memory import MemoryStore
from tests.api.authzed.scenario import Step, run
from tests.api.authzed.spicedb import SpiceDBFront, spicedb_unavailable

TOKEN = "conformance"

SAME_CODE = "same status code, different message"
DIFFERENT = "different answer"

DIFFERENCES: dict[str, tuple[str, str]] = {
    "WriteSchema that does not parse": (
        SAME_CODE,
        "policyd's parser (Lark) words its syntax errors and places them differently from "
        "SpiceDB's lexer; both answer INVALID_ARGUMENT with SpiceDB's `parse error in "
        "`schema`, line L, column C:` prefix",
    ),
    "DID as an id": (
        DIFFERENT,
        "ids here are a superset of SpiceDB's: DIDs and AT-URIs pass unencoded "
        "(policyd.api.authzed.errors.ID_PATTERN); SpiceDB refuses the ':'",
    ),
    "caveat context of the wrong type": (
        DIFFERENT,
        "SpiceDB answers UNKNOWN ('could not convert context parameter'), a conversion error "
        "it leaves unmapped; policyd answers INVALID_ARGUMENT naming the parameter, as for any "
        "malformed request",
    ),
    "LookupSubjects without wildcards": (
        DIFFERENT,
        "WILDCARD_OPTION_EXCLUDE_WILDCARDS 'specifies whether wildcards should be returned' "
        "(authzed/api/v1/permission_service.proto); policyd leaves the wildcard out, SpiceDB "
        "1.54 embedded still returns it",
    ),
}

EMULATED = frozenset(
    {
        "ImportBulkRelationships",
        "ImportBulkRelationships of an existing one",
        "imported relationship checks",
        "ExportBulkRelationships",
    }
)
"""Steps whose SpiceDB side the front emulates with WriteRelationships and ReadRelationships:
the embedded SpiceDB answers UNIMPLEMENTED to the bulk calls (spicedb.py)."""


@pytest.fixture(scope="module")
def spicedb_steps() -> list[Step]:
    reason = spicedb_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"SpiceDB must run in CI: {reason}")
        pytest.skip(reason)
    front = SpiceDBFront()
    try:
        return run(front.address, TOKEN)
    finally:
        front.close()


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def policyd_steps(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Step]]:
    """The scenario's answers from policyd over the in-memory store and over a SQLite file."""
    store = (
        MemoryStore()
        if request.param == "memory"
        else open_store(f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'policyd.db'}")
    )
    server = PolicydServer(Engine(store), store, ServerConfig(listen="127.0.0.1:0", token=TOKEN))
    server.start()
    try:
        yield run(server.address, TOKEN)
    finally:
        server.stop(grace=1)


def _code(answer: Any) -> Any:
    return answer.get("error") if isinstance(answer, dict) else answer


def test_every_answer_matches_spicedb(spicedb_steps: list[Step], policyd_steps: list[Step]) -> None:
    assert [name for name, _ in policyd_steps] == [name for name, _ in spicedb_steps]
    mismatches = []
    for (name, theirs), (_, ours) in zip(spicedb_steps, policyd_steps, strict=True):
        kind = DIFFERENCES.get(name, ("", ""))[0]
        if kind == SAME_CODE:
            assert _code(ours) == _code(theirs) != theirs, name
            assert ours != theirs, f"{name}: no longer differs; drop it from DIFFERENCES"
        elif kind == DIFFERENT:
            assert ours != theirs, f"{name}: no longer differs; drop it from DIFFERENCES"
        elif ours != theirs:
            mismatches.append(f"{name}:\n  spicedb: {theirs}\n  policyd: {ours}")
    assert not mismatches, "\n".join(mismatches)


def test_the_scenario_covers_every_call(policyd_steps: list[Step]) -> None:
    names = " ".join(name for name, _ in policyd_steps)
    for call in (
        "ReadSchema",
        "WriteSchema",
        "WriteRelationships",
        "CheckBulkPermissions",
        "LookupResources",
        "LookupSubjects",
        "ExpandPermissionTree",
        "ReadRelationships",
        "DeleteRelationships",
        "Watch",
        "ImportBulkRelationships",
        "ExportBulkRelationships",
    ):
        assert call in names
    assert {name for name, _ in policyd_steps} >= EMULATED
    assert set(DIFFERENCES) <= {name for name, _ in policyd_steps}
