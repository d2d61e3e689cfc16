"""Package parser reads .policy text into a syntax tree, or raises errors an author can act on.

Lark's LALR parser does the work; this module owns the Lark exceptions and
turns each into a located PolicySyntaxError that says, in words, what was found
and what was expected. After a syntax error it resumes at the next top-level
keyword so one run reports several errors.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import TypeVar

from lark import (
    Lark,
    Token,
    Tree,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.exceptions import VisitError

from policyd.dsl import ast
from policyd.dsl.transformer import PolicyTransformer
from policyd.errors import Diagnostic, PolicyErrors, PolicySyntaxError, SourceSpan

MAX_SYNTAX_ERRORS = 20
# Deeper nesting (an expression, a caveat parameter type) is refused: every later stage
# walks the tree recursively and Python's stack would overflow first (see test_parser_fuzz).
MAX_NESTING = 200
USE_FLAGS = ("expiration", "import", "partial", "self", "typechecking")

# How the grammar's terminals read in an error message.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": "a quoted string",
    "ARROW_FUNC": "'any' or 'all'",
    "SPLAT": "'...'",
    "STAR": "'*'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "CEL_EXPRESSION": "a CEL expression",
    "$END": "the end of the file",
}
_comments = threading.local()
_RESUME = re.compile(r"^[ \t]*(?:definition|caveat|partial)\b", re.MULTILINE)


def _on_comment(token: Token) -> Token:
    _comments.tokens.append(token)
    return token


@cache
def _lark() -> Lark:
    grammar = resources.files("policyd.dsl").joinpath("policy.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _on_comment},
    )


def parse_policy(text: str, source_name: str = "<policy>") -> ast.PolicyFile:
    """Parse policy text into a syntax tree.

    Raises:
        PolicySyntaxError: one error, located at the offending token.
        PolicyErrors: several syntax errors, each a Diagnostic with code ``syntax-error``.
    """
    diagnostics: list[Diagnostic] = []
    tree = _parse_with_recovery(text, source_name, diagnostics)
    if tree is not None:
        diagnostics.extend(_check_use_of_keywords(tree))
    if len(diagnostics) == 1:
        d = diagnostics[0]
        raise PolicySyntaxError(d.message, span=d.span, code=d.code)
    if diagnostics:
        raise PolicyErrors(diagnostics)
    assert tree is not None
    return tree


def _parse_with_recovery(
    text: str, source_name: str, diagnostics: list[Diagnostic]
) -> ast.PolicyFile | None:
    comments: list[Token] = []
    _comments.tokens = comments
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        diagnostics.append(_diagnostic(e, text, source_name))
        _collect_more_errors(text, source_name, e, diagnostics)
        return None
    finally:
        _comments.tokens = []
    too_deep = _too_deep(tree, source_name)
    if too_deep is not None:
        diagnostics.append(too_deep)
        return None
    try:
        parsed = PolicyTransformer(text, source_name).transform(tree)
    except VisitError as e:  # a bug in the transformer, never the author's fault
        raise e.orig_exc from e
    return _attach_layout(parsed, comments)


def _too_deep(tree: Tree[Token], source_name: str) -> Diagnostic | None:
    """A diagnostic at the first node nested more than MAX_NESTING deep, found without recursion."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            line, column = max(node.meta.line, 1), max(node.meta.column, 1)
            span = SourceSpan(source_name, line, column, line, column)
            message = f"nested more than {MAX_NESTING} levels deep: split it into several parts"
            return Diagnostic(span, "nesting-too-deep", message)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    return None


def _collect_more_errors(
    text: str, source_name: str, first: UnexpectedInput, diagnostics: list[Diagnostic]
) -> None:
    """Blank out everything before the next top-level keyword after each error and parse again."""
    error_pos = first.pos_in_stream or 0
    while len(diagnostics) < MAX_SYNTAX_ERRORS:
        match = _RESUME.search(text, error_pos + 1)
        if match is None:
            return
        start = match.start()
        # Keep newlines so every line and column stays where it was.
        masked = re.sub(r"[^\n]", " ", text[:start]) + text[start:]
        try:
            _lark().parse(masked)
            return
        except UnexpectedInput as e:
            diagnostics.append(_diagnostic(e, text, source_name))
            error_pos = max(e.pos_in_stream or start, start)


def _describe_expected(expected: set[str] | frozenset[str]) -> str:
    names = {n for n in expected if not n.startswith("__IGNORE")}
    if any(n.startswith("CEL_") for n in names):
        names = {n for n in names if not n.startswith("CEL_") and n != "LBRACE"}
        names.add("CEL_EXPRESSION")
    words = sorted({_terminal_word(name) for name in names})
    if not words:
        return "nothing more"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _terminal_word(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'" if pattern.type == "str" else name.lower()


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    value = str(token)
    if len(value) > 30:
        value = value[:27] + "..."
    return f"'{value}'"


def _diagnostic(e: UnexpectedInput, text: str, source_name: str) -> Diagnostic:
    line, column = e.line, e.column
    if isinstance(e, UnexpectedToken):
        found = _describe_token(e.token)
        if e.token.type == "$END":
            line, column = _end_position(text)
            message = f"unexpected end of file: expected {_describe_expected(e.expected)}"
        else:
            message = f"unexpected {found}: expected {_describe_expected(e.expected)}"
    elif isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        hint = _unclosed_string_hint(text, pos)
        expected = _describe_expected(e.allowed) if e.allowed else "a valid token"
        message = hint or f"unexpected character {char!r}: expected {expected}"
    elif isinstance(e, UnexpectedEOF):
        line, column = _end_position(text)
        message = f"unexpected end of file: expected {_describe_expected(set(e.expected))}"
    else:
        message = str(e)
    span = SourceSpan(source_name, max(line, 1), max(column, 1), max(line, 1), max(column, 1))
    return Diagnostic(span, "syntax-error", message)


def _unclosed_string_hint(text: str, pos: int) -> str | None:
    if pos < len(text) and text[pos] in "\"'":
        quote = text[pos]
        return f"unterminated or mismatched string starting with {quote}: close it with {quote}"
    return None


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _check_use_of_keywords(tree: ast.PolicyFile) -> list[Diagnostic]:
    """Rules of the language that the grammar does not express: ``use`` flags and keywords."""
    out: list[Diagnostic] = []
    flags = tree.use_flags
    seen_declaration = False
    for item in tree.items:
        span = item.span or SourceSpan(tree.source_name, 1, 1, 1, 1)
        if isinstance(item, ast.UseFlag):
            if item.name not in USE_FLAGS:
                options = ", ".join(USE_FLAGS)
                out.append(
                    Diagnostic(
                        span,
                        "unknown-use-flag",
                        f"unknown use flag '{item.name}': options are {options}",
                    )
                )
            if seen_declaration:
                out.append(
                    Diagnostic(
                        span,
                        "use-after-definition",
                        "'use' statements must come before any definition, caveat or partial",
                    )
                )
            continue
        if not isinstance(item, ast.ImportStmt):
            seen_declaration = True
        if isinstance(item, ast.CaveatDecl) and "expiration" in flags and item.name == "expiration":
            out.append(
                Diagnostic(
                    span,
                    "reserved-name",
                    "'expiration' is a keyword under 'use expiration' and cannot name a caveat",
                )
            )
        if isinstance(item, ast.DefinitionDecl | ast.PartialDecl) and "expiration" in flags:
            out.extend(_check_traits(item))
    return out


def _check_traits(block: ast.DefinitionDecl | ast.PartialDecl) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for member in block.members:
        if not isinstance(member, ast.RelationDecl):
            continue
        for ref in member.types:
            traits = ref.traits
            if "expiration" in traits[:-1] or traits.count("expiration") > 1:
                assert ref.span is not None
                out.append(
                    Diagnostic(
                        ref.span,
                        "expiration-order",
                        "the caveat must come before expiration, "
                        "e.g. 'with <caveat_name> and expiration'",
                    )
                )
    return out


# --- comments and blank lines -------------------------------------------------------------

_Pos = tuple[int, int]
_Block = ast.DefinitionDecl | ast.PartialDecl


def _start(span: SourceSpan | None) -> _Pos:
    assert span is not None
    return (span.line, span.column)


def _end(span: SourceSpan | None) -> _Pos:
    assert span is not None
    return (span.end_line, span.end_column)


def _attach_layout(tree: ast.PolicyFile, comments: list[Token]) -> ast.PolicyFile:
    """Give each declaration the comments above it and note blank lines between declarations."""
    pending = [(c.line or 0, c.column or 0, c.end_line or 0, str(c)) for c in comments]
    # Comments inside caveat bodies are part of the CEL expression text already.
    bodies = [
        (_start(i.expression_span), _end(i.span))
        for i in tree.items
        if isinstance(i, ast.CaveatDecl)
    ]
    pending = [c for c in pending if not any(b[0] <= (c[0], c[1]) <= b[1] for b in bodies)]
    items, trailing = _layout_children(list(tree.items), pending, (0, 0))
    return replace(tree, items=tuple(items), trailing_comments=trailing)


_N = TypeVar("_N", ast.TopLevel, ast.Member)


def _layout_children(
    children: list[_N], comments: list[tuple[int, int, int, str]], region_start: _Pos
) -> tuple[list[_N], tuple[str, ...]]:
    """Give comments in a region to the children after them; return those left at the end."""
    out: list[_N] = []
    remaining = sorted(comments)
    previous_end_line = region_start[0]

    def take_end_of_line(candidates: list[tuple[int, int, int, str]]) -> None:
        """A one-line comment on the line where the previous child ends belongs to that child."""
        if out and candidates and candidates[0][0] == candidates[0][2] == previous_end_line:
            text = candidates.pop(0)[3]
            out[-1] = replace(out[-1], layout=replace(out[-1].layout, trailing=text))

    for child in children:
        start, end = _start(child.span), _end(child.span)
        before = [c for c in remaining if (c[0], c[1]) < start]
        inside = [c for c in remaining if start <= (c[0], c[1]) <= end]
        remaining = [c for c in remaining if (c[0], c[1]) > end]
        take_end_of_line(before)
        first_line = before[0][0] if before else start[0]
        blank = bool(out) and first_line - previous_end_line > 1
        if isinstance(child, ast.DefinitionDecl | ast.PartialDecl):
            child = _layout_block(child, inside)
            inside = []
        texts = tuple(c[3] for c in before + inside)
        child = replace(child, layout=ast.Layout(texts, blank))
        out.append(child)
        previous_end_line = end[0]
    take_end_of_line(remaining)
    return out, tuple(c[3] for c in remaining)


def _layout_block(block: _Block, comments: list[tuple[int, int, int, str]]) -> _Block:
    members, trailing = _layout_children(list(block.members), comments, _start(block.span))
    return replace(block, members=tuple(members), trailing_comments=trailing)
