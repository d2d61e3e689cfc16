"""``policyd lsp`` through a real LSP client session (pytest-lsp) against the server process.

The client starts ``python -m policyd.cli lsp``, initializes, opens
policies/social.policy and asks what an editor asks: diagnostics, hover,
definition, references, rename, completion and formatting.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from policyd.lsp.server import analyse

POLICY = Path(__file__).resolve().parents[2] / "policies" / "social.policy"
TEXT = POLICY.read_text(encoding="utf-8")
URI = POLICY.as_uri()
LINES = TEXT.split("\n")


def _position(needle: str, occurrence: int = 0, offset: int = 0) -> types.Position:
    """The position of the ``occurrence``-th ``needle`` in social.policy, plus ``offset``."""
    seen = 0
    for number, line in enumerate(LINES):
        start = line.find(needle)
        while start >= 0:
            if seen == occurrence:
                return types.Position(number, start + offset)
            seen += 1
            start = line.find(needle, start + 1)
    raise AssertionError(f"{needle!r} #{occurrence} not in social.policy")


def _text_at(r: types.Range, lines: list[str] = LINES) -> str:
    return lines[r.start.line][r.start.character : r.end.character]


@pytest_lsp.fixture(  # type: ignore[untyped-decorator]  # pytest-lsp ships no types for it
    config=ClientServerConfig(server_command=[sys.executable, "-m", "policyd.cli", "lsp"])
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=URI)
    )
    yield
    await lsp_client.shutdown_session()


async def _open(client: LanguageClient, text: str = TEXT, uri: str = URI) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="policy", version=1, text=text
            )
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)


def _doc(uri: str = URI) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


@pytest.mark.asyncio
async def test_a_clean_file_has_no_diagnostics(client: LanguageClient) -> None:
    await _open(client)
    assert not client.diagnostics[URI]


@pytest.mark.asyncio
async def test_diagnostics_come_from_the_type_checker_at_the_word(client: LanguageClient) -> None:
    broken = TEXT.replace("follower - blocked", "follower - blockd", 1)
    uri = URI.replace("social.policy", "broken.policy")
    await _open(client, broken, uri)
    (diagnostic,) = client.diagnostics[uri]
    assert diagnostic.code == "unknown-relation"
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert _text_at(diagnostic.range, broken.split("\n")) == "blockd"
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="definition {")],
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    (syntax,) = client.diagnostics[uri]
    assert (syntax.code, syntax.range.start) == ("syntax-error", types.Position(0, 11))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("needle", "occurrence", "expected"),
    [
        ("close_friend) - blocked", 0, "```policy\nrelation blocked: account\n```"),
        ("see_followers_only", 1, "permission see_followers_only = follower - blocked"),
        ("active_subscription", 1, "caveat active_subscription(now timestamp, expires timestamp)"),
        ("account", 1, "An atproto account, identified by its DID"),  # a type's doc comment
    ],
    ids=["relation", "permission-through-arrow", "caveat", "definition"],
)
async def test_hover(client: LanguageClient, needle: str, occurrence: int, expected: str) -> None:
    await _open(client)
    word = needle.split()[-1]
    at = _position(needle, occurrence, len(needle) - len(word) + 1)
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=_doc(), position=at)
    )
    assert hover is not None
    assert isinstance(hover.contents, types.MarkupContent)
    assert expected in hover.contents.value


@pytest.mark.asyncio
async def test_definition_of_an_arrow_target_is_in_the_other_definition(
    client: LanguageClient,
) -> None:
    await _open(client)
    arrow = _position("author->see_mutuals_only", 0, len("author->") + 2)
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=_doc(), position=arrow)
    )
    assert isinstance(found, types.Location)
    assert found.range.start == _position("see_mutuals_only", 0)
    assert _text_at(found.range) == "see_mutuals_only"


@pytest.mark.asyncio
async def test_references_and_rename_of_a_relation(client: LanguageClient) -> None:
    await _open(client)
    at = _position("relation close_friend", 0, len("relation ") + 1)
    found = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=_doc(),
            position=at,
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    assert found is not None
    assert [_text_at(f.range) for f in found] == ["close_friend"] * 3
    edit = await client.text_document_rename_async(
        types.RenameParams(text_document=_doc(), position=at, new_name="bestie")
    )
    assert edit is not None
    assert edit.changes is not None
    assert len(edit.changes[URI]) == 3


@pytest.mark.asyncio
async def test_completion_offers_the_names_that_fit(client: LanguageClient) -> None:
    await _open(client)
    line = _position("permission view_public").line
    edited = LINES.copy()
    edited.insert(line, "    permission probe = author->")
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n".join(edited))],
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    end = types.Position(line, len(edited[line]))
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=_doc(), position=end)
    )
    assert isinstance(result, types.CompletionList)
    labels = {item.label for item in result.items}
    assert {"blocked", "see_followers_only", "not_blocked"} <= labels
    assert "viewer" not in labels  # a post's relation, not an account's


@pytest.mark.asyncio
async def test_formatting_is_policyd_fmt(client: LanguageClient) -> None:
    messy = (
        "definition user {}\ndefinition doc {\nrelation viewer: user\n  permission view=viewer\n}"
    )
    uri = URI.replace("social.policy", "messy.policy")
    await _open(client, messy, uri)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=_doc(uri), options=types.FormattingOptions(tab_size=4, insert_spaces=True)
        )
    )
    assert edits is not None
    (edit,) = edits
    assert edit.new_text == (
        "definition user {}\n\ndefinition doc {\n    relation viewer: user\n"
        "    permission view = viewer\n}\n"
    )
    clean = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=_doc(), options=types.FormattingOptions(tab_size=4, insert_spaces=True)
        )
    )
    assert not clean


def test_imports_resolve_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "users.policy").write_text("definition user {}\n", encoding="utf-8")
    main = tmp_path / "main.policy"
    text = (
        'use import\n\nimport "users.policy"\n\n'
        "definition doc {\n    relation owner: user\n    permission edit = owner\n}\n"
    )
    assert analyse(text, main.as_uri(), None).diagnostics == []
    codes = [d.code for d in analyse(text, "untitled:main", None).diagnostics]
    assert codes == ["import-unresolved", "unknown-type"]
