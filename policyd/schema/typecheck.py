"""Package typecheck checks a Schema for consistency; each rule has a stable code tests can match.

Errors (a schema with any is refused): unknown-type, unknown-relation,
unknown-caveat, duplicate-allowed-type, arrow-over-permission,
wildcard-in-arrow, transitive-wildcard, permission-cycle, caveat-invalid.
Warnings (reported, not blocking): unused-relation, never-granted,
arrow-target-missing. The rules follow SpiceDB's type system
(pkg/schema/typesystem_validation.go) so its schemas mean the same here.
"""

from __future__ import annotations

from collections.abc import Iterator

from policyd.caveats import CaveatCompileError, compile_caveat
from policyd.errors import Diagnostic, Severity, SourceSpan
from policyd.schema.analysis import (
    can_grant,
    permission_cycle,
    referenced_relations,
    walk,
    wildcard_source,
)
from policyd.schema.ir import (
    AllowedSubject,
    Arrow,
    Caveat,
    Definition,
    Permission,
    Relation,
    RelationRef,
    Schema,
)

_NOWHERE = SourceSpan("<policy>", 1, 1, 1, 1)


def _diag(
    span: SourceSpan | None, code: str, message: str, severity: Severity = Severity.ERROR
) -> Diagnostic:
    return Diagnostic(span or _NOWHERE, code, message, severity)


def typecheck(schema: Schema) -> list[Diagnostic]:
    """Every error and warning for a schema, in no particular order."""
    out: list[Diagnostic] = []
    for caveat in schema.caveats.values():
        out.extend(_check_caveat(caveat))
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            out.extend(_check_relation(schema, definition, relation))
        for permission in definition.permissions.values():
            out.extend(_check_permission(schema, definition, permission))
    out.extend(_unused_relations(schema))
    return out


def _check_caveat(caveat: Caveat) -> Iterator[Diagnostic]:
    if not all(p.type.is_valid for p in caveat.parameters):
        return  # the compiler reported the bad type where it was written
    try:
        compile_caveat(caveat.name, caveat.parameter_types, caveat.expression)
    except CaveatCompileError as e:
        span = caveat.expression_span or caveat.span
        if span is not None and e.position is not None:
            # The expression was dedented; later lines keep the first line's indentation.
            line = span.line + e.position.line - 1
            column = span.column + e.position.column - 1
            span = SourceSpan(span.file, line, column, line, column)
        yield _diag(span, "caveat-invalid", f"caveat '{caveat.name}': {e.detail}")


def _check_relation(
    schema: Schema, definition: Definition, relation: Relation
) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for allowed in relation.allowed:
        text = str(allowed)
        if text in seen:
            yield _diag(
                allowed.span,
                "duplicate-allowed-type",
                f"'{text}' is listed twice in relation '{definition.name}#{relation.name}'",
            )
        seen.add(text)
        yield from _check_allowed(schema, definition, relation, allowed)


def _check_allowed(
    schema: Schema, definition: Definition, relation: Relation, allowed: AllowedSubject
) -> Iterator[Diagnostic]:
    where = f"relation '{definition.name}#{relation.name}'"
    target = schema.definition(allowed.type)
    if target is None:
        yield _diag(
            allowed.span,
            "unknown-type",
            f"{where} allows subjects of type '{allowed.type}', which is not defined",
        )
    elif allowed.relation is not None:
        if target.member(allowed.relation) is None:
            yield _diag(
                allowed.span,
                "unknown-relation",
                f"{where} allows '{allowed.type}#{allowed.relation}', "
                f"but '{allowed.type}' has no relation or permission '{allowed.relation}'",
            )
        elif allowed.type != definition.name:
            # As in SpiceDB, only usersets of other types are checked for nested wildcards.
            source = wildcard_source(schema, allowed.type, allowed.relation)
            if source is not None:
                yield _diag(
                    allowed.span,
                    "transitive-wildcard",
                    f"{where} allows '{allowed.type}#{allowed.relation}', which can hold a "
                    f"wildcard through '{source}'; wildcards cannot be nested in usersets",
                )
    if allowed.caveat is not None and allowed.caveat not in schema.caveats:
        yield _diag(
            allowed.span,
            "unknown-caveat",
            f"{where} uses caveat '{allowed.caveat}', which is not defined",
        )


def _check_permission(
    schema: Schema, definition: Definition, permission: Permission
) -> Iterator[Diagnostic]:
    where = f"permission '{definition.name}#{permission.name}'"
    for type_name in permission.subject_types:
        if schema.definition(type_name) is None:
            yield _diag(
                permission.span,
                "unknown-type",
                f"{where} is annotated with type '{type_name}', which is not defined",
            )
    for node in walk(permission.rewrite):
        if isinstance(node, RelationRef) and definition.member(node.name) is None:
            yield _diag(
                node.span or permission.span,
                "unknown-relation",
                f"{where} refers to '{node.name}', which is not a relation or permission "
                f"of '{definition.name}'",
            )
        elif isinstance(node, Arrow):
            yield from _check_arrow(schema, definition, where, node, permission)
    cycle = permission_cycle(definition, permission)
    if cycle is not None:
        yield _diag(
            permission.span,
            "permission-cycle",
            f"{where} depends on itself without going through a relation: " + " -> ".join(cycle),
        )
    elif not can_grant(schema, definition, permission.rewrite):
        yield _diag(
            permission.span,
            "never-granted",
            f"{where} can never be granted to anyone",
            Severity.WARNING,
        )


def _check_arrow(
    schema: Schema, definition: Definition, where: str, arrow: Arrow, permission: Permission
) -> Iterator[Diagnostic]:
    span = arrow.span or permission.span
    if arrow.tupleset in definition.permissions:
        yield _diag(
            span,
            "arrow-over-permission",
            f"{where} walks '{arrow.tupleset}->{arrow.target}', but '{arrow.tupleset}' is a "
            "permission; an arrow must start from a relation",
        )
        return
    tupleset = definition.relations.get(arrow.tupleset)
    if tupleset is None:
        yield _diag(
            span,
            "unknown-relation",
            f"{where} walks '{arrow.tupleset}->{arrow.target}', but '{definition.name}' has "
            f"no relation '{arrow.tupleset}'",
        )
        return
    source = wildcard_source(schema, definition.name, arrow.tupleset)
    if source is not None:
        yield _diag(
            span,
            "wildcard-in-arrow",
            f"{where} walks '{arrow.tupleset}->{arrow.target}', but '{source}' allows a "
            "wildcard, which an arrow cannot walk",
        )
    targets = [schema.definition(a.type) for a in tupleset.allowed]
    if not any(t is not None and t.member(arrow.target) is not None for t in targets):
        yield _diag(
            span,
            "arrow-target-missing",
            f"{where} walks '{arrow.tupleset}->{arrow.target}', but no type allowed on "
            f"'{arrow.tupleset}' has '{arrow.target}', so the arrow never grants anything",
            Severity.WARNING,
        )


def _unused_relations(schema: Schema) -> Iterator[Diagnostic]:
    used = referenced_relations(schema)
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            if (definition.name, relation.name) not in used:
                yield _diag(
                    relation.span,
                    "unused-relation",
                    f"relation '{definition.name}#{relation.name}' is not used by any "
                    "permission, arrow or subject type",
                    Severity.WARNING,
                )
