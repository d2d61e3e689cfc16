"""Package compiler turns a policy syntax tree into a type-checked Schema, collecting every error.

Compilation resolves imports and partials, checks names, translates
expressions into IR rewrites, then runs the schema type checker. Errors are
gathered, not raised one by one, so an author sees all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from policyd.dsl import ast
from policyd.dsl.parser import parse_policy
from policyd.errors import Diagnostic, PolicyErrors, PolicySyntaxError, Severity, SourceSpan
from policyd.relationship import RELATION_NAME, TYPE_NAME
from policyd.schema import ir
from policyd.schema.typecheck import typecheck

# Reads an imported file: (path as written, importing file's name) -> (resolved name, text).
ImportResolver = Callable[[str, str], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy that compiled: its schema, its warnings and the syntax tree it came from."""

    schema: ir.Schema
    warnings: tuple[Diagnostic, ...]
    tree: ast.PolicyFile


def compile_policy(
    text: str, source_name: str = "<policy>", *, resolve_import: ImportResolver | None = None
) -> CompiledPolicy:
    """Parse, compile and type-check policy text.

    Raises:
        PolicySyntaxError: the text does not parse (one error).
        PolicyErrors: every error found, syntax or semantic, as diagnostics.
    """
    tree = parse_policy(text, source_name)
    diagnostics: list[Diagnostic] = []
    items = _resolve_imports(tree, resolve_import, diagnostics, {source_name})
    schema = _Translator(tree.use_flags, diagnostics).translate(items)
    diagnostics.extend(typecheck(schema))
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise PolicyErrors(sorted(diagnostics, key=lambda d: d.span))
    return CompiledPolicy(schema, tuple(sorted(diagnostics, key=lambda d: d.span)), tree)


def compile_file(path: str | Path) -> CompiledPolicy:
    """Compile a .policy file from disk; imports resolve relative to the importing file."""
    path = Path(path)
    return compile_policy(
        path.read_text(encoding="utf-8"), str(path), resolve_import=resolve_relative_import
    )


def resolve_relative_import(path: str, importer: str) -> tuple[str, str]:
    """Read an imported file relative to the directory of the file that imports it."""
    target = (Path(importer).parent / path).resolve()
    return str(target), target.read_text(encoding="utf-8")


def _error(span: SourceSpan | None, code: str, message: str) -> Diagnostic:
    return Diagnostic(span or SourceSpan("<policy>", 1, 1, 1, 1), code, message)


def _resolve_imports(
    tree: ast.PolicyFile,
    resolve: ImportResolver | None,
    diagnostics: list[Diagnostic],
    seen: set[str],
) -> list[ast.TopLevel]:
    """The file's items with every imported file's items spliced in where it was imported."""
    items: list[ast.TopLevel] = []
    for item in tree.items:
        if not isinstance(item, ast.ImportStmt):
            items.append(item)
            continue
        if resolve is None:
            diagnostics.append(
                _error(item.span, "import-unresolved", "imports need a policy read from a file")
            )
            continue
        try:
            name, text = resolve(item.path, tree.source_name)
        except OSError as e:
            diagnostics.append(
                _error(item.span, "import-unresolved", f"cannot read '{item.path}': {e.strerror}")
            )
            continue
        if name in seen:
            diagnostics.append(_error(item.span, "import-cycle", f"'{item.path}' imports itself"))
            continue
        try:
            imported = parse_policy(text, name)
        except PolicySyntaxError as e:
            assert e.span is not None
            diagnostics.append(Diagnostic(e.span, e.code, e.message))
            continue
        except PolicyErrors as e:
            diagnostics.extend(e.diagnostics)
            continue
        items.extend(_resolve_imports(imported, resolve, diagnostics, seen | {name}))
    return items


class _Translator:
    """Builds IR from syntax, reporting structural errors as it goes."""

    def __init__(self, flags: frozenset[str], diagnostics: list[Diagnostic]) -> None:
        self._flags = flags
        self._out = diagnostics
        self._caveat_names: set[str] = set()

    def translate(self, items: Iterable[ast.TopLevel]) -> ir.Schema:
        items = list(items)
        self._caveat_names = {i.name for i in items if isinstance(i, ast.CaveatDecl)}
        partials = self._partials(items)
        definitions: dict[str, ir.Definition] = {}
        caveats: dict[str, ir.Caveat] = {}
        for item in items:
            match item:
                case ast.DefinitionDecl():
                    if item.name in definitions or item.name in caveats:
                        self._dup(item.span, "definition", item.name)
                        continue
                    definitions[item.name] = self._definition(item, partials)
                case ast.CaveatDecl():
                    if item.name in caveats or item.name in definitions:
                        self._dup(item.span, "caveat", item.name)
                        continue
                    caveats[item.name] = self._caveat(item)
                case ast.PartialDecl() | ast.UseFlag() | ast.ImportStmt():
                    pass
                case _:
                    assert_never(item)
        return ir.Schema(definitions, caveats)

    def _dup(self, span: SourceSpan | None, kind: str, name: str) -> None:
        self._out.append(
            _error(
                span,
                f"duplicate-{kind}",
                f"{kind} '{name}': the name is already taken by an earlier definition or caveat",
            )
        )

    def _check_name(self, span: SourceSpan | None, kind: str, name: str, pattern: str) -> None:
        regex = TYPE_NAME if pattern == "type" else RELATION_NAME
        if not regex.fullmatch(name):
            rule = (
                "lowercase letters, digits and '_', 3 to 64 characters, starting with a letter"
                if pattern == "relation"
                else "lowercase segments of 3 to 64 letters, digits or '_' joined by '/'"
            )
            self._out.append(_error(span, "invalid-name", f"invalid {kind} name '{name}': {rule}"))

    def _partials(self, items: list[ast.TopLevel]) -> dict[str, ast.PartialDecl]:
        partials: dict[str, ast.PartialDecl] = {}
        for item in items:
            if isinstance(item, ast.PartialDecl):
                if item.name in partials:
                    self._dup(item.span, "partial", item.name)
                partials[item.name] = item
        return partials

    def _expand(
        self,
        members: Iterable[ast.Member],
        partials: dict[str, ast.PartialDecl],
        active: tuple[str, ...] = (),
    ) -> list[ast.RelationDecl | ast.PermissionDecl]:
        out: list[ast.RelationDecl | ast.PermissionDecl] = []
        for member in members:
            if not isinstance(member, ast.PartialRef):
                out.append(member)
                continue
            partial = partials.get(member.name)
            if partial is None:
                self._out.append(
                    _error(member.span, "unknown-partial", f"no partial named '{member.name}'")
                )
            elif member.name in active:
                self._out.append(
                    _error(member.span, "partial-cycle", f"partial '{member.name}' includes itself")
                )
            else:
                out.extend(self._expand(partial.members, partials, (*active, member.name)))
        return out

    def _definition(
        self, decl: ast.DefinitionDecl, partials: dict[str, ast.PartialDecl]
    ) -> ir.Definition:
        self._check_name(decl.span, "definition", decl.name, "type")
        relations: dict[str, ir.Relation] = {}
        permissions: dict[str, ir.Permission] = {}
        for member in self._expand(decl.members, partials):
            if member.name in relations or member.name in permissions:
                self._out.append(
                    _error(
                        member.span,
                        "duplicate-member",
                        f"'{member.name}' is defined twice in definition '{decl.name}'",
                    )
                )
                continue
            if isinstance(member, ast.RelationDecl):
                self._check_name(member.span, "relation", member.name, "relation")
                allowed = tuple(self._allowed(t) for t in member.types)
                relations[member.name] = ir.Relation(
                    member.name, allowed, member.layout.doc, member.span
                )
            else:
                self._check_name(member.span, "permission", member.name, "relation")
                permissions[member.name] = ir.Permission(
                    member.name,
                    self._rewrite(member.expr),
                    member.layout.doc,
                    member.subject_types,
                    member.span,
                )
        return ir.Definition(decl.name, relations, permissions, decl.layout.doc, decl.span)

    def _allowed(self, ref: ast.TypeRef) -> ir.AllowedSubject:
        caveats: list[str] = []
        expiration = False
        for trait in ref.traits:
            is_keyword = "expiration" in self._flags or "expiration" not in self._caveat_names
            if trait == "expiration" and is_keyword:
                expiration = True
            else:
                caveats.append(trait)
        if len(caveats) > 1:
            self._out.append(
                _error(ref.span, "multiple-caveats", "an allowed type takes at most one caveat")
            )
        relation = None if ref.relation in (None, "...") else ref.relation
        return ir.AllowedSubject(
            ref.type, relation, ref.wildcard, caveats[0] if caveats else None, expiration, ref.span
        )

    def _rewrite(self, expr: ast.Expr) -> ir.Rewrite:
        match expr:
            case ast.NilExpr():
                return ir.Nil()
            case ast.Identifier(name="self") if "self" in self._flags:
                return ir.SelfRef()
            case ast.Identifier(name=name, span=span):
                return ir.RelationRef(name, span)
            case ast.BinaryExpr(op="+"):
                return ir.Union(self._flatten(expr, "+"))
            case ast.BinaryExpr(op="&"):
                return ir.Intersection(self._flatten(expr, "&"))
            case ast.BinaryExpr(op="-", left=left, right=right):
                return ir.Exclusion(self._rewrite(left), self._rewrite(right))
            case ast.BinaryExpr():
                raise AssertionError(f"unknown operator {expr.op!r}")
            case ast.ArrowExpr(left=left, target=target, spelling=spelling, span=span):
                kind = ir.ArrowKind.ALL if spelling == "all" else ir.ArrowKind.ANY
                if isinstance(left, ast.Identifier):
                    return ir.Arrow(left.name, target, kind, span)
                self._out.append(
                    _error(
                        span,
                        "arrow-source",
                        "an arrow must start from a relation of this definition, "
                        "e.g. 'parent->view'; chained arrows are not supported",
                    )
                )
                return ir.Nil()
            case _:
                assert_never(expr)

    def _flatten(self, expr: ast.Expr, op: ast.BinaryOp) -> tuple[ir.Rewrite, ...]:
        if isinstance(expr, ast.BinaryExpr) and expr.op == op:
            return self._flatten(expr.left, op) + self._flatten(expr.right, op)
        return (self._rewrite(expr),)

    def _caveat(self, decl: ast.CaveatDecl) -> ir.Caveat:
        self._check_name(decl.span, "caveat", decl.name, "type")
        params: list[ir.CaveatParameter] = []
        for param in decl.params:
            if any(p.name == param.name for p in params):
                self._out.append(
                    _error(
                        param.span,
                        "duplicate-parameter",
                        f"parameter '{param.name}' of caveat '{decl.name}' is declared twice",
                    )
                )
                continue
            self._check_caveat_type(param.type)
            params.append(ir.CaveatParameter(param.name, _caveat_type(param.type)))
        return ir.Caveat(
            decl.name,
            tuple(params),
            decl.expression,
            decl.layout.doc,
            decl.span,
            decl.expression_span,
        )

    def _check_caveat_type(self, ref: ast.CaveatTypeRef) -> None:
        arity = ir.CAVEAT_TYPE_ARITY.get(ref.name)
        if arity is None:
            known = ", ".join(sorted(ir.CAVEAT_TYPE_ARITY))
            self._out.append(
                _error(
                    ref.span,
                    "unknown-caveat-type",
                    f"unknown caveat parameter type '{ref.name}': expected one of {known}",
                )
            )
        elif len(ref.args) != arity:
            expected = f"{ref.name}<T>" if arity else ref.name
            self._out.append(
                _error(
                    ref.span,
                    "caveat-type-arity",
                    f"type '{ref.name}' takes {arity} type argument{'s' if arity != 1 else ''}:"
                    f" write {expected}",
                )
            )
        for arg in ref.args:
            self._check_caveat_type(arg)


def _caveat_type(ref: ast.CaveatTypeRef) -> ir.CaveatType:
    return ir.CaveatType(ref.name, tuple(_caveat_type(a) for a in ref.args))
