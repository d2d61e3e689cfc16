"""The symbol index and completion contexts, without a server."""

from __future__ import annotations

import pytest

from policyd.dsl.parser import parse_policy
from policyd.lsp.server import completions, hover_text
from policyd.lsp.symbols import SymbolIndex, index

POLICY = """\
caveat fresh(now timestamp) {
    now > timestamp("2020-01-01T00:00:00Z")
}

/** A group of users. */
definition group {
    relation member: user | group#member with fresh
}

definition user {}

definition doc {
    relation parent: group
    relation viewer: user | group#member
    permission view = viewer + parent->member
}
"""


@pytest.fixture
def symbols() -> SymbolIndex:
    return index(parse_policy(POLICY), POLICY)


def _names(symbols: SymbolIndex, key: tuple[str, ...]) -> list[tuple[int, int, bool]]:
    return [(o.range.line, o.range.start, o.declaration) for o in symbols.of(key)]


def test_every_use_of_a_member_is_found(symbols: SymbolIndex) -> None:
    # declared in group; used as group#member twice and as the arrow's target
    assert _names(symbols, ("member", "group", "member")) == [
        (6, 13, True),
        (6, 34, False),
        (13, 34, False),
        (14, 39, False),
    ]
    assert _names(symbols, ("caveat", "fresh")) == [(0, 7, True), (6, 46, False)]
    assert [o.range.line for o in symbols.of(("type", "user"))] == [9, 6, 13]


def test_hover_text_names_the_declaration_and_doc(symbols: SymbolIndex) -> None:
    text = hover_text(symbols, ("type", "group")) or ""
    assert text.startswith("```policy\ndefinition group\n```")
    assert "A group of users." in text
    assert "members: `member`" in text
    assert hover_text(symbols, ("type", "nobody")) is None


@pytest.mark.parametrize(
    ("before", "line", "expected"),
    [
        ("    permission view = viewer + parent->", 14, ["member"]),
        ("    relation viewer: user | group#", 13, ["member"]),
        ("    relation viewer: ", 13, ["doc", "group", "user"]),
        ("    relation member: user with", 6, ["fresh"]),
        ("    permission view = ", 14, ["parent", "viewer", "view"]),
    ],
    ids=["arrow-target", "userset-relation", "subject-type", "caveat", "expression"],
)
def test_completion_contexts(
    symbols: SymbolIndex, before: str, line: int, expected: list[str]
) -> None:
    assert [item.label for item in completions(symbols, before, line)] == expected
