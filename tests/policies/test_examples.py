"""The example policies' scenario files (policies/*.yaml) pass, through the API and the CLI.

Each file is a SpiceDB validation file over ``social.policy`` or
``atproto.policy`` with real-looking DIDs and AT-URIs. Besides its own
assertions, every file must have ListObjects and ListSubjects agree with Check
for every object and subject it mentions, on both engine read paths.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from policyd.cli import main
from policyd.validationfile import load_engine, load_validation_files, run_validation_file
from tests.conformance.test_integration_engine import agreement_problems

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"social.test.yaml", "atproto.test.yaml"}


@pytest.mark.parametrize("index", [True, False], ids=["index", "store-reads"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes(path: Path, index: bool) -> None:
    files = load_validation_files(path)
    assert files, f"{path.name} holds no validation documents"
    for loaded in files:
        assert loaded.assertions, f"{path.name}: a document without assertions tests nothing"
        assert not loaded.policy.warnings
        failures = run_validation_file(loaded, index=index)
        assert not failures, "\n".join(f"{f}\n{f.explanation}" for f in failures)


@pytest.mark.parametrize("index", [True, False], ids=["index", "store-reads"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_lookups_agree_with_check(path: Path, index: bool) -> None:
    for loaded in load_validation_files(path):
        problems = agreement_problems(load_engine(loaded, index=index), loaded)
        assert not problems, "\n".join(problems[:20])


def test_policyd_validate_passes_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *(str(p) for p in EXAMPLES)]) == 0
    out = capsys.readouterr().out
    for path in EXAMPLES:
        assert f"{path}: ok" in out


def scenario(tmp_path: Path, body: str) -> Path:
    """A validation file over a copy of social.policy in ``tmp_path``."""
    (tmp_path / "social.policy").write_text((POLICIES / "social.policy").read_text())
    path = tmp_path / "scenario.yaml"
    path.write_text("schemaFile: social.policy\n" + textwrap.dedent(body))
    return path


def test_policyd_validate_reports_a_broken_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong expectation fails with the assertion and its explain tree."""
    broken = scenario(
        tmp_path,
        """\
            relationships: |-
              account:did:plc:alice#follower@account:did:plc:bob
              account:did:plc:alice#blocked@account:did:plc:bob
            assertions:
              assertTrue:
                - account:did:plc:alice#see_followers_only@account:did:plc:bob
            """,
    )
    assert main(["validate", str(broken)]) != 0
    err = capsys.readouterr().err
    assert "expected has_permission, got no_permission" in err
    assert "✓ account:did:plc:alice#blocked" in err


def test_caveated_expected_subjects_in_spicedb_notation(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """\
            relationships: |-
              creator:did:plc:alice#silver@account:did:plc:bob[active_subscription]
            validation:
              "creator:did:plc:alice#silver_content":
                - "[account:did:plc:bob[...]] is <creator:did:plc:alice#silver>"
            """,
    )
    (loaded,) = load_validation_files(path)
    assert run_validation_file(loaded) == []


def test_policyd_validate_reports_a_wrong_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bob reads the space through the nested one: the path is the nested space's member."""
    path = scenario(
        tmp_path,
        """\
            relationships: |-
              space:club#member@space:spoilers#member
              space:spoilers#member@account:did:plc:bob
            assertions:
              assertTrue:
                - space:club#read@account:did:plc:bob
            validation:
              "space:club#read":
                - "[account:did:plc:bob] is <space:club#member>"
            """,
    )
    assert main(["validate", str(path)]) != 0
    err = capsys.readouterr().err
    assert (
        "space:club#read: found different relationships for subject account:did:plc:bob: "
        "specified <space:club#member>, computed <space:spoilers#member>"
    ) in err
