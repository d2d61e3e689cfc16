"""Package symbols finds every name in a .policy file: where each is declared and where it is used.

The language server answers hover, go to definition, find references, rename
and completion from this index, built from the parser's syntax tree (so it
sees exactly what the compiler sees). The tree's spans cover whole
declarations and expressions; the name inside one is found by searching the
span's text for the name as a whole word, from the start for a declaration or
a subject type and from the end for an arrow's target.

A symbol is keyed ``("type", name)``, ``("member", type, name)`` (relations
and permissions) or ``("caveat", name)``. Positions are 0-based (line,
character), as LSP counts them; the parser's are 1-based.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from policyd.dsl import ast
from policyd.errors import SourceSpan

Key = tuple[str, ...]


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """A 0-based range within one line."""

    line: int
    start: int
    end: int

    def contains(self, line: int, character: int) -> bool:
        """Whether the position lies on the range (its end included, as a cursor after a word)."""
        return line == self.line and self.start <= character <= self.end


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One place a symbol's name is written; ``declaration`` for where it is declared."""

    key: Key
    range: Range
    declaration: bool = False


@dataclass(slots=True)
class Declaration:
    """What hover shows of a symbol: its declaration as written, and its doc comment."""

    key: Key
    range: Range
    text: str
    doc: str = ""


@dataclass(slots=True)
class SymbolIndex:
    """Every occurrence and declaration in a file, and what each definition holds."""

    occurrences: list[Occurrence] = field(default_factory=list)
    declarations: dict[Key, Declaration] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    """Each definition's relations and permissions, in order."""
    relation_types: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """The subject types a relation allows, for arrows."""
    blocks: list[tuple[str, int, int]] = field(default_factory=list)
    """Each definition's name and its first and last line (0-based)."""

    def at(self, line: int, character: int) -> Occurrence | None:
        """The occurrence under a position."""
        for occurrence in self.occurrences:
            if occurrence.range.contains(line, character):
                return occurrence
        return None

    def of(self, key: Key) -> list[Occurrence]:
        """Every occurrence of a symbol, declaration first."""
        return sorted(
            (o for o in self.occurrences if o.key == key),
            key=lambda o: (not o.declaration, o.range),
        )

    def definition_at(self, line: int) -> str | None:
        """The definition whose block holds a line."""
        for name, first, last in self.blocks:
            if first <= line <= last:
                return name
        return None


class _Text:
    """Offsets and positions of a file's text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def offset(self, line: int, column: int) -> int:
        """The offset of a 1-based line and column."""
        line = min(max(line, 1), len(self.starts))
        return self.starts[line - 1] + column - 1

    def range(self, offset: int, length: int) -> Range:
        line = max(i for i, start in enumerate(self.starts) if start <= offset)
        start = offset - self.starts[line]
        return Range(line, start, start + length)

    def find(self, name: str, span: SourceSpan | None, *, last: bool = False) -> Range | None:
        """Where ``name`` is written as a whole word within a span."""
        if span is None:
            return None
        begin = self.offset(span.line, span.column)
        end = self.offset(span.end_line, span.end_column)
        matches = list(re.finditer(rf"(?<![\w]){re.escape(name)}(?![\w])", self.text[begin:end]))
        if not matches:
            return None
        match = matches[-1] if last else matches[0]
        return self.range(begin + match.start(), len(name))

    def slice(self, span: SourceSpan | None) -> str:
        if span is None:
            return ""
        return self.text[
            self.offset(span.line, span.column) : self.offset(span.end_line, span.end_column)
        ]


def index(tree: ast.PolicyFile, text: str) -> SymbolIndex:
    """Index a parsed file's declarations and references."""
    source = _Text(text)
    out = SymbolIndex()
    definitions = [i for i in tree.items if isinstance(i, ast.DefinitionDecl)]
    for item in tree.items:
        if isinstance(item, ast.DefinitionDecl | ast.CaveatDecl):
            kind = "type" if isinstance(item, ast.DefinitionDecl) else "caveat"
            _declare(out, source, (kind, item.name), item.span, item.layout.doc, header=True)
    for definition in definitions:
        out.members[definition.name] = []
        if definition.span is not None:
            out.blocks.append(
                (definition.name, definition.span.line - 1, definition.span.end_line - 1)
            )
        for member in definition.members:
            if isinstance(member, ast.PartialRef):
                continue
            out.members[definition.name].append(member.name)
            key = ("member", definition.name, member.name)
            _declare(out, source, key, member.span, member.layout.doc)
            if isinstance(member, ast.RelationDecl):
                out.relation_types[(definition.name, member.name)] = [t.type for t in member.types]
    for definition in definitions:
        for member in definition.members:
            if isinstance(member, ast.RelationDecl):
                for ref in member.types:
                    out.occurrences.extend(_type_ref(source, ref))
            elif isinstance(member, ast.PermissionDecl):
                for type_name in member.subject_types:
                    _use(out, source, ("type", type_name), member.span, last=True)
                out.occurrences.extend(_expression(source, out, definition.name, member.expr))
    return out


def _declare(
    out: SymbolIndex,
    source: _Text,
    key: Key,
    span: SourceSpan | None,
    doc: str,
    *,
    header: bool = False,
) -> None:
    """Record a declaration: its name (after its keyword) and the text hover shows."""
    found = source.find(key[-1], span)
    if found is None:
        return
    out.occurrences.append(Occurrence(key, found, declaration=True))
    text = source.slice(span).strip()
    if header:  # a definition or caveat shows its first line, not its whole body
        text = text.split("{", 1)[0].strip()
    out.declarations[key] = Declaration(key, found, text, doc)


def _use(out: SymbolIndex, source: _Text, key: Key, span: SourceSpan | None, last: bool) -> None:
    found = source.find(key[-1], span, last=last)
    if found is not None:
        out.occurrences.append(Occurrence(key, found))


def _type_ref(source: _Text, ref: ast.TypeRef) -> Iterator[Occurrence]:
    """``type``, ``type#relation`` and ``with caveat`` in an allowed subject type."""
    found = source.find(ref.type.rsplit("/", 1)[-1], ref.span)
    if found is not None:
        yield Occurrence(("type", ref.type), found)
    if ref.relation is not None and ref.relation != "..." and ref.span is not None:
        text = source.slice(ref.span)
        at = text.find("#" + ref.relation)
        if at >= 0:
            begin = source.offset(ref.span.line, ref.span.column) + at + 1
            yield Occurrence(
                ("member", ref.type, ref.relation), source.range(begin, len(ref.relation))
            )
    for trait in ref.traits:
        if trait != "expiration":
            found = source.find(trait, ref.span, last=True)
            if found is not None:
                yield Occurrence(("caveat", trait), found)


def _expression(
    source: _Text, out: SymbolIndex, type_name: str, expr: ast.Expr
) -> Iterator[Occurrence]:
    """The relations and permissions an expression names, arrows' targets included."""
    match expr:
        case ast.Identifier(name=name, span=span) if name != "self":
            found = source.find(name, span)
            if found is not None:
                yield Occurrence(("member", type_name, name), found)
        case ast.BinaryExpr(left=left, right=right):
            yield from _expression(source, out, type_name, left)
            yield from _expression(source, out, type_name, right)
        case ast.ArrowExpr(left=left, target=target, span=span):
            yield from _expression(source, out, type_name, left)
            found = source.find(target, span, last=True)
            if found is not None and isinstance(left, ast.Identifier):
                for subject_type in out.relation_types.get((type_name, left.name), []):
                    if target in out.members.get(subject_type, []):
                        yield Occurrence(("member", subject_type, target), found)
        case _:
            return
