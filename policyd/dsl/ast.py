"""Package ast holds the syntax tree of a .policy file: what the author wrote, comments included.

The tree keeps syntax the IR drops (partials, imports, ``use`` flags, how an
arrow was spelled, comments and blank lines) so that the formatter can print
any file that parses, even one that does not type-check. Spans and layout hints
take no part in equality: a file and its formatted form parse to equal trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from policyd.errors import SourceSpan

BinaryOp = Literal["+", "&", "-"]
ArrowSpelling = Literal["->", "any", "all"]

# Binding strength of each binary operator, loosest first (SpiceDB's order).
PRECEDENCE: dict[BinaryOp, int] = {"-": 1, "&": 2, "+": 3}


@dataclass(frozen=True, slots=True)
class Identifier:
    """A relation, permission or ``self`` referenced in an expression."""

    name: str
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NilExpr:
    """``nil``: the empty set."""

    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BinaryExpr:
    """``left op right`` for union ``+``, intersection ``&`` and exclusion ``-``."""

    op: BinaryOp
    left: Expr
    right: Expr
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ArrowExpr:
    """``left->target``, ``left.any(target)`` or ``left.all(target)``."""

    left: Expr
    target: str
    spelling: ArrowSpelling
    span: SourceSpan | None = field(default=None, compare=False)


Expr: TypeAlias = Identifier | NilExpr | BinaryExpr | ArrowExpr


@dataclass(frozen=True, slots=True)
class TypeRef:
    """One allowed subject type: ``user``, ``group#member``, ``user:*``, ``user with c``."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    traits: tuple[str, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Layout:
    """Comments and spacing around a declaration, kept for the formatter.

    ``comments`` are the raw comments directly above the declaration (doc
    comments included); ``blank_before`` says a blank line separated it from
    what came before; ``trailing`` is a comment after it on its last line.
    """

    comments: tuple[str, ...] = ()
    blank_before: bool = field(default=False, compare=False)
    trailing: str = ""
    """A one-line comment at the end of the declaration's last line."""

    @property
    def doc(self) -> str:
        """The text of the last ``/** … */`` comment, without its markers and gutter."""
        for comment in reversed(self.comments):
            if comment.startswith("/**") and comment != "/**/":
                return doc_text(comment)
        return ""


@dataclass(frozen=True, slots=True)
class RelationDecl:
    """``relation name: type | type …``."""

    name: str
    types: tuple[TypeRef, ...]
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PermissionDecl:
    """``permission name[: type | …] = expr``."""

    name: str
    expr: Expr
    subject_types: tuple[str, ...] = ()
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PartialRef:
    """``...name``: splices a partial's members into a definition."""

    name: str
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


Member: TypeAlias = RelationDecl | PermissionDecl | PartialRef


@dataclass(frozen=True, slots=True)
class DefinitionDecl:
    """``definition name { members }``."""

    name: str
    members: tuple[Member, ...]
    layout: Layout = Layout()
    trailing_comments: tuple[str, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PartialDecl:
    """``partial name { members }`` (with ``use partial``)."""

    name: str
    members: tuple[Member, ...]
    layout: Layout = Layout()
    trailing_comments: tuple[str, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CaveatParam:
    """``name type`` in a caveat's parameter list."""

    name: str
    type: CaveatTypeRef
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CaveatTypeRef:
    """A parameter type as written: ``int``, ``list<string>``, ``map<any>``."""

    name: str
    args: tuple[CaveatTypeRef, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CaveatDecl:
    """``caveat name(params) { CEL }``; ``expression`` is the CEL text, dedented and stripped."""

    name: str
    params: tuple[CaveatParam, ...]
    expression: str
    expression_span: SourceSpan | None = field(default=None, compare=False)
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UseFlag:
    """``use flag``: opts into a feature (expiration, self, partial, import, typechecking)."""

    name: str
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ImportStmt:
    """``import "path"`` (with ``use import``): the path exactly as quoted."""

    path: str
    quoted: str
    layout: Layout = Layout()
    span: SourceSpan | None = field(default=None, compare=False)


TopLevel: TypeAlias = UseFlag | ImportStmt | DefinitionDecl | PartialDecl | CaveatDecl


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """A parsed .policy file."""

    items: tuple[TopLevel, ...]
    trailing_comments: tuple[str, ...] = ()
    source_name: str = field(default="<policy>", compare=False)

    @property
    def use_flags(self) -> frozenset[str]:
        """The names of every ``use`` flag in the file."""
        return frozenset(i.name for i in self.items if isinstance(i, UseFlag))


def doc_text(comment: str) -> str:
    """The prose of a ``/** … */`` comment without markers, gutters and blank edge lines."""
    body = comment[3:-2]
    lines = [line.strip() for line in body.splitlines()]
    lines = [line[1:].lstrip() if line.startswith("*") else line for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
