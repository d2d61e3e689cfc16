"""The workspace folder: files are opened and saved only inside it, and saves are validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.cli import main
from policyd.errors import InvalidRequestError
from policyd.playground.scenario import Scenario
from policyd.playground.workspace import Workspace

MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"
ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"


def test_files_and_titles(policies: Path) -> None:
    for hidden in (".git", "node_modules/x"):
        (policies / hidden).mkdir(parents=True)
        (policies / hidden / "config.yaml").write_text("a: 1\n", encoding="utf-8")
    workspace = Workspace(policies)
    assert workspace.files() == ["atproto.test.yaml", "social.test.yaml", "spaces.test.yaml"]
    titles = [d.title for d in workspace.open("social.test.yaml")]
    assert titles[0].startswith("audiences: public, followers-only")
    assert len(titles) == 4


@pytest.mark.parametrize(
    "path", ["../outside.yaml", "/etc/passwd", "social.policy", "sub/../../x.yaml"]
)
def test_paths_outside_the_folder_or_not_yaml_are_refused(policies: Path, path: str) -> None:
    with pytest.raises(InvalidRequestError):
        Workspace(policies).path(path)


def test_saving_one_document_keeps_the_others_and_validates(policies: Path) -> None:
    workspace = Workspace(policies)
    before = (policies / "social.test.yaml").read_text(encoding="utf-8")
    documents = workspace.open("social.test.yaml")
    scenario = documents[1].scenario
    extra = f"post:at://{ALICE}/app.bsky.feed.post/3kglst6q2ah8c#view_public@account:did:web:x.org"
    scenario.assertions = scenario.assertions.replace(
        "assertFalse:\n", f"assertFalse:\n  - {extra}\n"
    )
    saved = workspace.save("social.test.yaml", 1, scenario)
    assert saved.written == ("social.test.yaml",)
    assert saved.verdict.ok, saved.verdict.lines
    assert saved.verdict.lines == ("ok: 81 assertions passed",)
    after = (policies / "social.test.yaml").read_text(encoding="utf-8")
    assert after.replace(f"  assertFalse:\n    - {extra}\n", "  assertFalse:\n", 1) == before
    assert main(["validate", str(policies / "social.test.yaml")]) == 0


def test_a_changed_schema_file_is_written_and_a_broken_save_is_reported(policies: Path) -> None:
    workspace = Workspace(policies)
    scenario = workspace.open("social.test.yaml")[0].scenario
    scenario.policy = scenario.policy.replace(
        "permission view_public = (author + viewer) - author->blocked",
        "permission view_public = author + viewer",
    )
    saved = workspace.save("social.test.yaml", 0, scenario)
    assert saved.written == ("social.test.yaml", "social.policy")
    assert not saved.verdict.ok
    assert any("assertFalse" in line for line in saved.verdict.lines)
    assert saved.verdict.lines[-1].endswith("assertions failed")


def test_saving_a_new_file(policies: Path) -> None:
    scenario = Scenario(
        policy="definition user {}\n\ndefinition doc {\n    relation viewer: user\n"
        "    permission view = viewer\n}\n",
        relationships="doc:1#viewer@user:ann",
        assertions="assertTrue:\n  - doc:1#view@user:ann\nassertFalse:\n  - doc:1#view@user:bob",
    )
    saved = Workspace(policies).save("new/doc.test.yaml", 0, scenario)
    assert saved.verdict.lines == ("ok: 2 assertions passed",)
    assert main(["validate", str(policies / "new" / "doc.test.yaml")]) == 0
