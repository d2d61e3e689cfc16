"""The VS Code extension: its manifest, and its TextMate grammar tokenizing the example policies.

The grammar is run by vscode-textmate with the Oniguruma regex engine, as VS
Code runs it (editors/vscode/test/tokenize.mjs), and must agree with the
parser on every name: each declaration and each use of a type, relation,
permission or caveat that the symbol index finds gets that kind's scope, and
no other text is left unscoped. ``.ci/run`` installs the node modules; without
node or them these tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from policyd.dsl.parser import parse_policy
from policyd.lsp.symbols import Occurrence, index

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
POLICIES = sorted((ROOT / "policies").glob("*.policy"))
Token = dict[str, object]

# The scope each kind of name must carry, by what the symbol index calls it.
SCOPES = {
    ("type", True): "entity.name.type.policy",
    ("type", False): "entity.name.type.policy",
    ("member", True): "variable.other.member",
    ("member", False): "variable.other.member",
    ("caveat", True): "entity.name.function.caveat.policy",
    ("caveat", False): "entity.name.function.caveat.policy",
}


@pytest.fixture(scope="module")
def tokens() -> dict[str, list[list[Token]]]:
    node = shutil.which("node")
    if node is None or not (EXTENSION / "node_modules" / "vscode-textmate").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node and editors/vscode/node_modules are needed: .ci/run runs npm ci")
        pytest.skip("run 'npm ci' in editors/vscode (needs node) to test the grammar")
    out = subprocess.run(
        [node, "test/tokenize.mjs", *map(str, POLICIES)],
        cwd=EXTENSION,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = (json.loads(line) for line in out.stdout.splitlines())
    return {Path(f["file"]).name: f["lines"] for f in found}


def _scopes_at(lines: list[list[Token]], occurrence: Occurrence) -> list[str]:
    column = 0
    for token in lines[occurrence.range.line]:
        text = str(token["text"])
        if column <= occurrence.range.start < column + len(text):
            assert column + len(text) >= occurrence.range.end, f"{text!r} splits the name"
            return [str(s) for s in token["scopes"]]  # type: ignore[attr-defined]
        column += len(text)
    raise AssertionError(f"nothing at {occurrence.range}")


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_every_name_has_its_scope(tokens: dict[str, list[list[Token]]], path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    symbols = index(parse_policy(text, path.name), text)
    assert symbols.occurrences
    for occurrence in symbols.occurrences:
        want = SCOPES[(occurrence.key[0], occurrence.declaration)]
        scopes = _scopes_at(tokens[path.name], occurrence)
        where = f"{path.name}:{occurrence.range.line + 1}:{occurrence.range.start + 1}"
        assert any(s.startswith(want) for s in scopes), f"{where} {occurrence.key}: {scopes}"


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_nothing_but_space_is_left_unscoped(
    tokens: dict[str, list[list[Token]]], path: Path
) -> None:
    for number, line in enumerate(tokens[path.name], 1):
        for token in line:
            if token["scopes"] == ["source.policy"]:
                assert not str(token["text"]).strip(), f"{path.name}:{number}: {token['text']!r}"


def test_operators_and_comments(tokens: dict[str, list[list[Token]]]) -> None:
    scoped = {
        (str(t["text"]), str(t["scopes"][-1]))  # type: ignore[index]
        for line in tokens["social.policy"]
        for t in line
    }
    assert ("-", "keyword.operator.set.policy") in scoped
    assert ("->", "keyword.operator.arrow.policy") in scoped
    assert ("/**", "comment.block.documentation.policy") in scoped
    assert ("*", "constant.language.wildcard.policy") in scoped
    assert ("expiration", "constant.language.flag.policy") in scoped


def test_the_manifest_wires_the_grammar_and_the_language_server() -> None:
    manifest = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    (language,) = manifest["contributes"]["languages"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert language["extensions"] == [".policy"]
    assert grammar["language"] == language["id"]
    assert (EXTENSION / grammar["path"]).is_file()
    assert (EXTENSION / language["configuration"]).is_file()
    extension = (EXTENSION / manifest["main"]).read_text(encoding="utf-8")
    assert 'args: ["lsp"]' in extension
    assert (
        json.loads((EXTENSION / grammar["path"]).read_text())["scopeName"] == grammar["scopeName"]
    )
