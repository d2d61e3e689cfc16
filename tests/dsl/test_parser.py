"""The parser: trees, spans, comments, contextual keywords and worded, located syntax errors."""

from __future__ import annotations

import pytest

from policyd.dsl import ast
from policyd.dsl.parser import parse_policy
from policyd.errors import PolicyErrors, PolicySyntaxError


def members(text: str) -> tuple[ast.Member, ...]:
    item = parse_policy(text).items[0]
    assert isinstance(item, ast.DefinitionDecl)
    return item.members


def test_arrow_binds_tighter_than_union() -> None:
    (perm,) = members("definition doc { permission view = owner + parent->view }")
    assert isinstance(perm, ast.PermissionDecl)
    assert perm.expr == ast.BinaryExpr(
        "+", ast.Identifier("owner"), ast.ArrowExpr(ast.Identifier("parent"), "view", "->")
    )


def test_keywords_are_names_where_only_a_name_fits() -> None:
    found = members(
        "definition doc {\n relation any: user\n relation import: user\n"
        " permission all = any + import\n}"
    )
    assert [m.name for m in found if not isinstance(m, ast.PartialRef)] == [
        "any",
        "import",
        "all",
    ]


def test_spans_point_at_source() -> None:
    (rel,) = members("definition doc {\n    relation viewer: user\n}")
    assert rel.span is not None
    assert (rel.span.line, rel.span.column) == (2, 5)


def test_comments_attach_to_the_declaration_below() -> None:
    text = (
        "// file header\n"
        "/** a user */\n"
        "definition user {}\n"
        "\n"
        "definition doc {\n"
        "    // who can see\n"
        "    relation viewer: user\n"
        "\n"
        "    permission view = viewer\n"
        "    // trailing note\n"
        "}\n"
        "// the end\n"
    )
    tree = parse_policy(text)
    user, doc = tree.items
    assert user.layout.comments == ("// file header", "/** a user */")
    assert user.layout.doc == "a user"
    assert isinstance(doc, ast.DefinitionDecl)
    viewer, view = doc.members
    assert viewer.layout.comments == ("// who can see",)
    assert view.layout.blank_before
    assert doc.trailing_comments == ("// trailing note",)
    assert tree.trailing_comments == ("// the end",)


def test_caveat_expression_is_dedented_text() -> None:
    tree = parse_policy("caveat cav(limit int, count uint) {\n    limit >\n      count\n}")
    (caveat,) = tree.items
    assert isinstance(caveat, ast.CaveatDecl)
    assert caveat.expression == "limit >\n  count"
    assert [p.name for p in caveat.params] == ["limit", "count"]


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("definition doc {\n  relation viewer user\n}", 2, 19, "expected ':'"),
        ("definition doc {\n  permission view = \n}", 3, 1, "expected '(' or a name"),
        ("definition doc {", 1, 17, "unexpected end of file"),
        ("definition doc { permission view = a.foo(b) }", 1, 38, "'any' or 'all'"),
        ("caveat cav(a int) {\n  a == 1 `\n}", 2, 10, "unexpected character '`'"),
        ("use nonsense\n", 1, 1, "unknown use flag 'nonsense'"),
        ('use import\nimport "unterminated\n', 2, 8, "unterminated or mismatched string"),
    ],
    ids=[
        "missing-colon",
        "missing-expression",
        "unclosed-definition",
        "bad-arrow-function",
        "bad-cel-character",
        "unknown-use-flag",
        "unterminated-import",
    ],
)
def test_syntax_errors_are_located_and_worded(
    text: str, line: int, column: int, words: str
) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text, "x.policy")
    error = info.value
    assert error.span is not None
    assert (error.span.line, error.span.column) == (line, column)
    assert words in error.message
    assert str(error).startswith(f"x.policy:{line}:{column}: ")
    for raw in ("$END", "__ANON", "LBRACE", "NAME"):
        assert raw not in error.message


def test_several_syntax_errors_are_collected() -> None:
    text = "definition aaa {\n relation\n}\n\ndefinition bbb {\n permission = x\n}\n"
    with pytest.raises(PolicyErrors) as info:
        parse_policy(text)
    assert [(d.span.line, d.code) for d in info.value.errors] == [
        (3, "syntax-error"),
        (6, "syntax-error"),
    ]
