"""Package transformer turns Lark's parse tree into the policy syntax tree (policyd.dsl.ast).

It only builds nodes; comments, layout and every check happen elsewhere.
"""

from __future__ import annotations

import textwrap
from typing import Any

from lark import Token, Transformer, v_args
from lark.tree import Meta

from policyd.dsl import ast
from policyd.errors import SourceSpan


def span_of(source_name: str, meta: Meta | Token) -> SourceSpan:
    """The source span of a tree node or token."""
    return SourceSpan(
        source_name,
        meta.line or 0,
        meta.column or 0,
        meta.end_line or meta.line or 0,
        meta.end_column or meta.column or 0,
    )


@v_args(meta=True, inline=True)
class PolicyTransformer(Transformer[Token, ast.PolicyFile]):
    """Builds ``ast`` nodes bottom-up from the tree of ``policy.lark``."""

    def __init__(self, source: str, source_name: str) -> None:
        super().__init__()
        self._source = source
        self._lines = source.splitlines(keepends=True)
        self._name = source_name

    def _span(self, meta: Meta | Token) -> SourceSpan:
        return span_of(self._name, meta)

    def start(self, meta: Meta, *items: ast.TopLevel) -> ast.PolicyFile:
        return ast.PolicyFile(items=items, source_name=self._name)

    def use_flag(self, meta: Meta, name: Token) -> ast.UseFlag:
        return ast.UseFlag(str(name), span=self._span(meta))

    def import_stmt(self, meta: Meta, path: Token) -> ast.ImportStmt:
        quoted = str(path)
        quote = 3 if quoted[:3] in ('"""', "'''") else 1
        return ast.ImportStmt(quoted[quote:-quote], quoted, span=self._span(meta))

    def definition(self, meta: Meta, name: str, *members: ast.Member) -> ast.DefinitionDecl:
        return ast.DefinitionDecl(name, members, span=self._span(meta))

    def partial(self, meta: Meta, name: Token, *members: ast.Member) -> ast.PartialDecl:
        return ast.PartialDecl(str(name), members, span=self._span(meta))

    def partial_ref(self, meta: Meta, _splat: Token, name: Token) -> ast.PartialRef:
        return ast.PartialRef(str(name), span=self._span(meta))

    def relation(self, meta: Meta, name: Token, *types: ast.TypeRef) -> ast.RelationDecl:
        return ast.RelationDecl(str(name), types, span=self._span(meta))

    def subject_type(
        self, meta: Meta, type_name: str, *rest: tuple[str, str] | tuple[str, ...]
    ) -> ast.TypeRef:
        relation: str | None = None
        wildcard = False
        traits: tuple[str, ...] = ()
        for part in rest:
            if part and part[0] == "#":
                relation = part[1]
            elif part and part[0] == "*":
                wildcard = True
            elif part and part[0] == "with":
                traits = tuple(part[1:])
        return ast.TypeRef(type_name, relation, wildcard, traits, span=self._span(meta))

    def subject_relation(self, meta: Meta, name: Token) -> tuple[str, str]:
        return ("#", str(name))

    def subject_ellipsis(self, meta: Meta, _splat: Token) -> tuple[str, ...]:
        return ("...",)

    def subject_wildcard(self, meta: Meta, _star: Token) -> tuple[str, ...]:
        return ("*",)

    def traits(self, meta: Meta, *names: str) -> tuple[str, ...]:
        return ("with", *names)

    def permission(self, meta: Meta, name: Token, *rest: Any) -> ast.PermissionDecl:
        subject_types: tuple[str, ...] = rest[0] if len(rest) == 2 else ()
        return ast.PermissionDecl(str(name), rest[-1], subject_types, span=self._span(meta))

    def permission_types(self, meta: Meta, *names: str) -> tuple[str, ...]:
        return names

    def exclude(self, meta: Meta, left: ast.Expr, right: ast.Expr) -> ast.BinaryExpr:
        return ast.BinaryExpr("-", left, right, span=self._span(meta))

    def intersect(self, meta: Meta, left: ast.Expr, right: ast.Expr) -> ast.BinaryExpr:
        return ast.BinaryExpr("&", left, right, span=self._span(meta))

    def union(self, meta: Meta, left: ast.Expr, right: ast.Expr) -> ast.BinaryExpr:
        return ast.BinaryExpr("+", left, right, span=self._span(meta))

    def arrow(self, meta: Meta, left: ast.Expr, target: Token) -> ast.ArrowExpr:
        return ast.ArrowExpr(left, str(target), "->", span=self._span(meta))

    def arrow_func(self, meta: Meta, left: ast.Expr, func: Token, target: Token) -> ast.ArrowExpr:
        spelling: ast.ArrowSpelling = "all" if str(func) == "all" else "any"
        return ast.ArrowExpr(left, str(target), spelling, span=self._span(meta))

    def ref(self, meta: Meta, name: Token) -> ast.Identifier:
        return ast.Identifier(str(name), span=self._span(meta))

    def nil(self, meta: Meta) -> ast.NilExpr:
        return ast.NilExpr(span=self._span(meta))

    def caveat(self, meta: Meta, name: str, *rest: Any) -> ast.CaveatDecl:
        *params, (expression, expression_span) = rest
        return ast.CaveatDecl(
            name,
            tuple(p for p in params if p is not None),
            expression,
            expression_span,
            span=self._span(meta),
        )

    def caveat_param(self, meta: Meta, name: Token, type_: ast.CaveatTypeRef) -> ast.CaveatParam:
        return ast.CaveatParam(str(name), type_, span=self._span(meta))

    def caveat_type(
        self, meta: Meta, name: Token, *args: ast.CaveatTypeRef | None
    ) -> ast.CaveatTypeRef:
        return ast.CaveatTypeRef(
            str(name), tuple(a for a in args if a is not None), span=self._span(meta)
        )

    def caveat_body(self, meta: Meta, lbrace: Token, *rest: Any) -> tuple[str, SourceSpan]:
        rbrace: Token = rest[-1]
        start = lbrace.end_pos or 0
        end = rbrace.start_pos or 0
        raw = self._source[start:end]
        # Re-indenting would change a multi-line string literal, so such bodies stay as written.
        multiline_string = '"""' in raw or "'''" in raw
        expression = raw.strip() if multiline_string else textwrap.dedent(raw.strip("\n")).strip()
        # The span of the expression text: first line after the brace that holds any text.
        offset = start + (len(raw) - len(raw.lstrip()))
        line = self._source.count("\n", 0, offset) + 1
        column = offset - (self._source.rfind("\n", 0, offset) + 1) + 1
        span = SourceSpan(self._name, line, column, rbrace.line or line, rbrace.column or column)
        return expression, span

    def cel_braces(self, meta: Meta, *tokens: Token) -> None:
        return None

    def type_path(self, meta: Meta, *parts: Token) -> str:
        return "/".join(str(p) for p in parts)
