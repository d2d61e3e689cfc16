"""Hypothesis strategies for .policy syntax trees and texts, and the comment normaliser tests share.

``policy_files()`` draws ``ast.PolicyFile`` trees that parse back from their
canonical text: every name is a valid NAME (keywords included, since the
language's keywords are contextual), ``use`` flags come first and are known
flags, and comments are already in the shape the formatter prints.
``policy_texts()`` draws such a tree and writes it out untidily (odd spacing
and indentation, tabs, extra parentheses, comments on the same line), to test
the formatter on text it did not write itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from policyd.dsl import ast
from policyd.dsl.parser import USE_FLAGS

KEYWORDS = (
    "definition",
    "relation",
    "permission",
    "caveat",
    "use",
    "import",
    "partial",
    "nil",
    "with",
    "and",
    "any",
    "all",
    "expiration",
    "self",
)

names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True),
    st.sampled_from(KEYWORDS),
)
# `nil` in an expression is the empty set, never a name.
expr_names = names.filter(lambda n: n != "nil")
type_paths = st.lists(names, min_size=1, max_size=3).map("/".join)

_COMMENT_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="*/"),
    max_size=30,
).map(str.strip)
_WORDS = st.from_regex(r"[a-z][a-z ]{0,20}[a-z]", fullmatch=True)


@st.composite
def comments(draw: st.DrawFn, indent: str = "") -> str:
    """One comment as the parser records it after the formatter printed it at ``indent``."""
    kind = draw(st.sampled_from(["line", "block", "doc", "multiline"]))
    if kind == "line":
        return ("// " + draw(_COMMENT_TEXT)).rstrip()
    if kind == "block":
        return "/* " + draw(_COMMENT_TEXT) + " */"
    if kind == "doc":
        lines = draw(st.lists(_COMMENT_TEXT, min_size=1, max_size=3))
        gutter = "".join(f"\n{indent} * {line}".rstrip() for line in lines)
        return f"/**{gutter}\n{indent} */"
    # A block comment without a gutter keeps its continuation lines as written.
    lines = draw(st.lists(_WORDS, min_size=2, max_size=3))
    return "/* " + "\n   ".join(lines) + " */"


def layouts(indent: str = "") -> st.SearchStrategy[ast.Layout]:
    """Comments above a declaration and whether a blank line precedes it."""
    return st.builds(
        ast.Layout,
        comments=st.lists(comments(indent), max_size=2).map(tuple),
        blank_before=st.booleans(),
    )


exprs: st.SearchStrategy[ast.Expr] = st.recursive(
    st.one_of(st.builds(ast.Identifier, expr_names), st.just(ast.NilExpr())),
    lambda inner: st.one_of(
        st.builds(ast.BinaryExpr, st.sampled_from(["+", "&", "-"]), inner, inner),
        st.builds(ast.ArrowExpr, inner, names, st.sampled_from(["->", "any", "all"])),
    ),
    max_leaves=12,
)


@st.composite
def type_refs(draw: st.DrawFn, expiration: bool) -> ast.TypeRef:
    """``type``, ``type#rel`` or ``type:*``, with caveat traits and perhaps ``expiration`` last."""
    suffix = draw(st.sampled_from(["plain", "relation", "wildcard"]))
    traits = draw(st.lists(type_paths.filter(lambda t: t != "expiration"), max_size=2))
    if expiration and draw(st.booleans()):
        traits.append("expiration")
    return ast.TypeRef(
        draw(type_paths),
        relation=draw(names) if suffix == "relation" else None,
        wildcard=suffix == "wildcard",
        traits=tuple(traits),
    )


def members(expiration: bool) -> st.SearchStrategy[ast.Member]:
    """A relation, a permission or a partial reference, with comments at member indent."""
    layout = layouts("    ")
    return st.one_of(
        st.builds(
            ast.RelationDecl,
            names,
            st.lists(type_refs(expiration), min_size=1, max_size=3).map(tuple),
            layout,
        ),
        st.builds(
            ast.PermissionDecl,
            names,
            exprs,
            st.lists(type_paths, max_size=2).map(tuple),
            layout,
        ),
        st.builds(ast.PartialRef, names, layout),
    )


def _blocks(kind: Callable[..., Any], name: st.SearchStrategy[str], expiration: bool) -> Any:
    return st.builds(
        kind,
        name,
        st.lists(members(expiration), max_size=5).map(tuple),
        layouts(),
        st.lists(comments("    "), max_size=2).map(tuple),
    )


caveat_types: st.SearchStrategy[ast.CaveatTypeRef] = st.recursive(
    st.builds(ast.CaveatTypeRef, st.sampled_from(["int", "uint", "bool", "string", "timestamp"])),
    lambda inner: st.builds(
        ast.CaveatTypeRef,
        st.sampled_from(["list", "map"]),
        st.lists(inner, min_size=1, max_size=2).map(tuple),
    ),
    max_leaves=3,
)


@st.composite
def cel_expressions(draw: st.DrawFn, params: tuple[str, ...]) -> str:
    """A small CEL expression over the parameters, dedented and stripped as the parser keeps it."""
    atoms = [*params, "42", "true", '"}"', "'{x}'", "{'k': 1}.k", "[1, 2][0]", "now"]
    terms = draw(st.lists(st.sampled_from(atoms), min_size=1, max_size=4))
    text = terms[0]
    for term in terms[1:]:
        operator = draw(st.sampled_from(["&&", "||", "==", "<"]))
        # An operator may end a line; the continuation is indented as an author might.
        text += f" {operator}\n  {term}" if draw(st.booleans()) else f" {operator} {term}"
    return text


@st.composite
def caveats(draw: st.DrawFn, expiration: bool) -> ast.CaveatDecl:
    """``caveat name(params) { CEL }``; never named ``expiration`` under ``use expiration``."""
    name = draw(type_paths.filter(lambda n: not (expiration and n == "expiration")))
    param_names = draw(st.lists(names, max_size=3, unique=True))
    params = tuple(ast.CaveatParam(p, draw(caveat_types)) for p in param_names)
    return ast.CaveatDecl(
        name, params, draw(cel_expressions(tuple(param_names))), layout=draw(layouts())
    )


_IMPORT_PATHS = st.from_regex(r"[a-z0-9_./-]{1,20}", fullmatch=True)


@st.composite
def imports(draw: st.DrawFn) -> ast.ImportStmt:
    """``import "path"`` in any of the four quotings."""
    path = draw(_IMPORT_PATHS)
    quote = draw(st.sampled_from(['"', "'", '"""', "'''"]))
    return ast.ImportStmt(path, f"{quote}{path}{quote}", draw(layouts()))


@st.composite
def policy_files(draw: st.DrawFn) -> ast.PolicyFile:
    """A syntax tree that any correct parser reads back from its canonical text."""
    flags = draw(st.lists(st.sampled_from(USE_FLAGS), max_size=3))
    expiration = "expiration" in flags
    items: list[ast.TopLevel] = [ast.UseFlag(f, draw(layouts())) for f in flags]
    items += draw(st.lists(imports(), max_size=2))
    declarations = st.one_of(
        _blocks(ast.DefinitionDecl, type_paths, expiration),
        _blocks(ast.PartialDecl, names, expiration),
        caveats(expiration),
        imports(),
    )
    items += draw(st.lists(declarations, max_size=5))
    trailing = draw(st.lists(comments(), max_size=2))
    return ast.PolicyFile(tuple(items), tuple(trailing))


# --- untidy text --------------------------------------------------------------------------


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    """Policy text that parses, written with untidy whitespace, parentheses and comments."""
    tree = draw(policy_files())
    return _UntidyWriter(draw).file(tree)


class _UntidyWriter:
    """Writes a tree as valid but untidy text; every choice is drawn, so failures shrink."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def space(self, required: bool = True) -> str:
        return self.draw(st.sampled_from([" ", "  ", "\t", " \n  "] + ([] if required else [""])))

    def indent(self) -> str:
        return self.draw(st.sampled_from(["", "  ", "\t", "        ", " \t"]))

    def comments(self, layout: ast.Layout) -> str:
        out = "\n" if layout.blank_before and self.draw(st.booleans()) else ""
        for comment in layout.comments:
            # Gutter lines may start anywhere; the formatter lines them up again.
            comment = comment.replace("\n ", "\n" + self.indent() + " ")
            out += self.indent() + comment + "\n"
        return out

    def file(self, tree: ast.PolicyFile) -> str:
        text = "".join(self.top_level(item) + "\n" for item in tree.items)
        text += "".join(self.indent() + c + "\n" for c in tree.trailing_comments)
        return text + self.draw(st.sampled_from(["", "\n", "\n\n", "  "]))

    def top_level(self, item: ast.TopLevel) -> str:
        head = self.comments(item.layout) + self.indent()
        s = self.space
        match item:
            case ast.UseFlag():
                return f"{head}use{s()}{item.name}"
            case ast.ImportStmt():
                return f"{head}import{s()}{item.quoted}"
            case ast.DefinitionDecl() | ast.PartialDecl():
                keyword = "definition" if isinstance(item, ast.DefinitionDecl) else "partial"
                body = "".join("\n" + self.member(m) for m in item.members)
                body += "".join("\n" + self.indent() + c for c in item.trailing_comments)
                close = "\n}" if body else s(required=False) + "}"
                return f"{head}{keyword}{s()}{self.path(item.name)}{s(False)}{{{body}{close}"
            case ast.CaveatDecl():
                params = f",{s(False)}".join(
                    f"{p.name}{s()}{self.caveat_type(p.type)}" for p in item.params
                )
                comma = "," if params and self.draw(st.booleans()) else ""
                indent = self.indent()
                body = "\n".join(indent + line for line in item.expression.split("\n"))
                return (
                    f"{head}caveat{s()}{self.path(item.name)}{s(False)}({params}{comma})"
                    f"{s(False)}{{\n{body}\n}}"
                )
        raise AssertionError(item)

    def path(self, path: str) -> str:
        return f"{self.space(False)}/{self.space(False)}".join(path.split("/"))

    def caveat_type(self, ref: ast.CaveatTypeRef) -> str:
        if not ref.args:
            return ref.name
        return f"{ref.name}<{', '.join(self.caveat_type(a) for a in ref.args)}>"

    def member(self, member: ast.Member) -> str:
        head = self.comments(member.layout) + self.indent()
        s = self.space
        match member:
            case ast.RelationDecl():
                types = f"{s(False)}|{s(False)}".join(self.type_ref(t) for t in member.types)
                return f"{head}relation{s()}{member.name}{s(False)}:{s(False)}{types}"
            case ast.PermissionDecl():
                annotation = ""
                if member.subject_types:
                    annotation = f"{s(False)}:{s(False)}" + f"{s(False)}|{s(False)}".join(
                        member.subject_types
                    )
                expr = self.expr(member.expr)
                return f"{head}permission{s()}{member.name}{annotation}{s(False)}={s(False)}{expr}"
            case ast.PartialRef():
                return f"{head}...{member.name}"
        raise AssertionError(member)

    def type_ref(self, ref: ast.TypeRef) -> str:
        text = ref.type
        if ref.relation is not None:
            text += f"#{ref.relation}"
        elif ref.wildcard:
            text += ":*"
        elif self.draw(st.integers(0, 5)) == 0:
            text += "#..."  # means the same as no relation at all
        if ref.traits:
            text += f"{self.space()}with{self.space()}" + f"{self.space()}and{self.space()}".join(
                ref.traits
            )
        return text

    def expr(self, expr: ast.Expr) -> str:
        """Fully parenthesised where needed, with extra parentheses and comments sometimes."""
        s = self.space
        match expr:
            case ast.Identifier():
                text = expr.name
            case ast.NilExpr():
                text = "nil"
            case ast.BinaryExpr():
                left, right = self.expr(expr.left), self.expr(expr.right)
                text = f"({left}){s(False)}{expr.op}{s(False)}({right})"
            case ast.ArrowExpr():
                arrow = f"->{s(False)}{expr.target}"
                if expr.spelling != "->":
                    arrow = f".{expr.spelling}({s(False)}{expr.target}{s(False)})"
                text = f"({self.expr(expr.left)}){arrow}"
        if self.draw(st.integers(0, 9)) == 0:
            text = f"({s(False)}{text}{s(False)})"
        return text


# --- comparing trees ----------------------------------------------------------------------

_T = TypeVar("_T")


def map_comments(node: _T, change: Callable[[str], str]) -> _T:
    """A copy of ``node`` with ``change`` applied to every comment text in it."""
    if isinstance(node, tuple):
        return tuple(map_comments(n, change) for n in node)  # type: ignore[return-value]
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.name in ("comments", "trailing_comments"):
            updates[f.name] = tuple(change(c) for c in value)
        elif f.compare:
            updates[f.name] = map_comments(value, change)
    return dataclasses.replace(node, **updates)


def comment_shape(comment: str) -> str:
    """A comment without the whitespace the formatter may change.

    That is trailing whitespace on every line, and the indentation of the
    gutter lines of a ``/** … */``-style comment, which the formatter lines up.
    """
    first, *rest = [line.rstrip() for line in comment.split("\n")]
    if rest and all(line.lstrip().startswith("*") for line in rest):
        rest = [line.lstrip() for line in rest]
    return "\n".join([first, *rest])


def normalized(tree: ast.PolicyFile) -> ast.PolicyFile:
    """``tree`` with every comment reduced to its ``comment_shape``."""
    return map_comments(tree, comment_shape)
