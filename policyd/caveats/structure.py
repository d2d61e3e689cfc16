"""Package caveats.structure finds the top-level boolean structure of a CEL expression.

The CEL library evaluates whole expressions and has no partial evaluation, so
SpiceDB's "which parameters are still missing" needs the expression's
``&&``, ``||``, ``!``, ``?:`` and parentheses at the top: each operand between
them (a leaf) runs on its own and is UNKNOWN when it reads a parameter the
context lacks. This module tokenizes an expression that already parsed and
returns that structure as a tree of token-index spans; everything it does not
model (a macro, a call, a comparison) stays inside one leaf.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "AndNode",
    "BooleanTree",
    "LeafSpan",
    "NotNode",
    "OrNode",
    "TernaryNode",
    "Token",
    "boolean_tree",
    "tokens",
]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>
        (?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")
      | [bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
              |'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
  | (?P<number>\d[\w.]*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<op>&&|\|\||==|!=|<=|>=|\.\?|[-+*/%!<>?:()\[\]{},.])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""The comprehension macros: each binds a variable and runs its body once per element."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token of an expression: its kind, text and character offsets."""

    kind: str
    text: str
    start: int
    end: int


def tokens(expression: str) -> list[Token]:
    """The tokens of a CEL expression that already parsed, without spaces and comments."""
    found = []
    for match in _TOKEN.finditer(expression):
        kind = match.lastgroup or "other"
        if kind != "space":
            found.append(Token(kind, match.group(), match.start(), match.end()))
    return found


@dataclass(frozen=True, slots=True)
class LeafSpan:
    """A subexpression with no top-level boolean structure, by token index range."""

    first: int
    last: int
    relational: bool
    arithmetic: bool


@dataclass(frozen=True, slots=True)
class NotNode:
    """``!operand``."""

    operand: BooleanTree


@dataclass(frozen=True, slots=True)
class AndNode:
    """``a && b && …``."""

    children: tuple[BooleanTree, ...]


@dataclass(frozen=True, slots=True)
class OrNode:
    """``a || b || …``."""

    children: tuple[BooleanTree, ...]


@dataclass(frozen=True, slots=True)
class TernaryNode:
    """``condition ? then : otherwise``."""

    condition: BooleanTree
    then: BooleanTree
    otherwise: BooleanTree


BooleanTree: TypeAlias = LeafSpan | NotNode | AndNode | OrNode | TernaryNode


class _NotStructuralError(Exception):
    """The boolean-structure parser met something it does not model: use one leaf."""


_BOUNDARY = frozenset({"&&", "||", "?", ":", ")"})
_OPEN = frozenset({"(", "[", "{"})
_CLOSE = frozenset({")", "]", "}"})
_RELATIONAL = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_ARITHMETIC = frozenset({"+", "-", "*", "/", "%"})


class _BooleanParser:
    """Parses the top-level ``?:``, ``||``, ``&&``, ``!`` and parentheses; the rest are leaves.

    CEL precedence from low to high is ``?:``, ``||``, ``&&``, relations, arithmetic,
    unary; a ``!`` or a parenthesised group followed by anything but a boundary
    (``&&``, ``||``, ``?``, ``:``, ``)`` or the end) belongs to a leaf instead.
    """

    def __init__(self, found: Sequence[Token]) -> None:
        self.tokens = found
        self.i = 0

    def parse(self) -> BooleanTree:
        parsed = self.ternary()
        if self.i != len(self.tokens):
            raise _NotStructuralError
        return parsed

    def peek(self) -> str | None:
        return self.tokens[self.i].text if self.i < len(self.tokens) else None

    def at_boundary(self) -> bool:
        token = self.peek()
        return token is None or token in _BOUNDARY

    def ternary(self) -> BooleanTree:
        condition = self.disjunction()
        if self.peek() != "?":
            return condition
        self.i += 1
        then = self.disjunction()
        if self.peek() != ":":
            raise _NotStructuralError
        self.i += 1
        return TernaryNode(condition, then, self.ternary())

    def disjunction(self) -> BooleanTree:
        return self.chain("||", self.conjunction, OrNode)

    def conjunction(self) -> BooleanTree:
        return self.chain("&&", self.unary, AndNode)

    def chain(
        self,
        operator: str,
        operand: Callable[[], BooleanTree],
        node: Callable[[tuple[BooleanTree, ...]], BooleanTree],
    ) -> BooleanTree:
        children = [operand()]
        while self.peek() == operator:
            self.i += 1
            children.append(operand())
        return children[0] if len(children) == 1 else node(tuple(children))

    def unary(self) -> BooleanTree:
        start = self.i
        token = self.peek()
        if token == "!":
            # A run of ``!`` is read in a loop and folded (an even run is no negation), as
            # cel-go's parser does: 1,000 of them must not take 1,000 Python stack frames.
            while self.peek() == "!":
                self.i += 1
            negations = self.i - start
            operand = self.unary()
            binary = isinstance(operand, LeafSpan) and (operand.relational or operand.arithmetic)
            if self.at_boundary() and not binary:
                return NotNode(operand) if negations % 2 else operand
        elif token == "(":
            self.i += 1
            inner = self.ternary()
            if self.peek() == ")":
                self.i += 1
                if self.at_boundary():
                    return inner
        self.i = start
        return self.leaf()

    def leaf(self) -> LeafSpan:
        start, depth = self.i, 0
        relational = arithmetic = False
        while self.i < len(self.tokens):
            text = self.tokens[self.i].text
            if depth == 0 and text in _BOUNDARY:
                break
            if text in _OPEN:
                depth += 1
            elif text in _CLOSE:
                depth -= 1
            elif depth == 0 and self.i > start:
                relational |= text in _RELATIONAL
                arithmetic |= text in _ARITHMETIC
            self.i += 1
        if self.i == start:
            raise _NotStructuralError
        return LeafSpan(start, self.i - 1, relational, arithmetic)


def boolean_tree(found: Sequence[Token]) -> BooleanTree:
    """The boolean structure of the expression, or a single leaf when it is not modelled."""
    whole = LeafSpan(0, len(found) - 1, relational=True, arithmetic=False)
    try:
        return _BooleanParser(found).parse()
    except _NotStructuralError:
        return whole
