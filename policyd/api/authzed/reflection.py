"""Package reflection answers SchemaService's reflection calls from the compiled Schema.

SpiceDB's reflection API (internal/services/v1/reflectionapi.go) describes a
schema as definitions, relations with their subject types, permissions and
caveats; says which relations a permission depends on and which permissions a
relation feeds; and diffs the stored schema against another. All of it is
read off policyd's IR: the dependency graph links a permission to the members
its rewrite names (through arrows, to the target member on every type the
arrow's relation allows) and a relation to the subject relations it allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from authzed.api.v1 import schema_service_pb2 as pb

from policyd.schema.analysis import walk
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

Member = tuple[str, str]
"""(definition name, relation or permission name)."""


def reflect(
    schema: Schema, filters: Iterable[pb.ReflectionSchemaFilter]
) -> pb.ReflectSchemaResponse:
    """The ReflectSchemaResponse of a schema, keeping what any filter admits (all without)."""
    filters = list(filters)
    response = pb.ReflectSchemaResponse()
    for definition in sorted(schema.definitions.values(), key=lambda d: d.name):
        kept = [f for f in filters if definition.name.startswith(f.optional_definition_name_filter)]
        if filters and not kept:
            continue
        if filters and not any(f.optional_definition_name_filter for f in kept):
            continue
        reflected = definition_proto(definition)
        relation_prefixes = [f.optional_relation_name_filter for f in kept]
        permission_prefixes = [f.optional_permission_name_filter for f in kept]
        if any(relation_prefixes) or any(permission_prefixes):
            del reflected.relations[:]
            del reflected.permissions[:]
            reflected.relations.extend(
                relation_proto(definition.name, r)
                for r in definition.relations.values()
                if any(p and r.name.startswith(p) for p in relation_prefixes)
            )
            reflected.permissions.extend(
                permission_proto(definition.name, p)
                for p in definition.permissions.values()
                if any(q and p.name.startswith(q) for q in permission_prefixes)
            )
        response.definitions.append(reflected)
    for caveat in sorted(schema.caveats.values(), key=lambda c: c.name):
        if filters and not any(
            f.optional_caveat_name_filter and caveat.name.startswith(f.optional_caveat_name_filter)
            for f in filters
        ):
            continue
        response.caveats.append(caveat_proto(caveat))
    return response


def definition_proto(definition: Definition) -> pb.ReflectionDefinition:
    """A definition with its relations and permissions, in declaration order."""
    return pb.ReflectionDefinition(
        name=definition.name,
        comment=definition.doc,
        relations=[relation_proto(definition.name, r) for r in definition.relations.values()],
        permissions=[permission_proto(definition.name, p) for p in definition.permissions.values()],
    )


def relation_proto(definition: str, relation: Relation) -> pb.ReflectionRelation:
    """A relation with its allowed subject types."""
    return pb.ReflectionRelation(
        name=relation.name,
        comment=relation.doc,
        parent_definition_name=definition,
        subject_types=[type_reference(a) for a in relation.allowed],
    )


def type_reference(allowed: AllowedSubject) -> pb.ReflectionTypeReference:
    """One allowed subject type: terminal, a subject relation, or a public wildcard."""
    reference = pb.ReflectionTypeReference(
        subject_definition_name=allowed.type, optional_caveat_name=allowed.caveat or ""
    )
    if allowed.wildcard:
        reference.is_public_wildcard = True
    elif allowed.relation:
        reference.optional_relation_name = allowed.relation
    else:
        reference.is_terminal_subject = True
    return reference


def permission_proto(definition: str, permission: Permission) -> pb.ReflectionPermission:
    """A permission (its expression is not part of SpiceDB's reflection)."""
    return pb.ReflectionPermission(
        name=permission.name, comment=permission.doc, parent_definition_name=definition
    )


def caveat_proto(caveat: Caveat) -> pb.ReflectionCaveat:
    """A caveat with its typed parameters and CEL expression."""
    return pb.ReflectionCaveat(
        name=caveat.name,
        comment=caveat.doc,
        expression=caveat.expression,
        parameters=[
            pb.ReflectionCaveatParameter(
                name=p.name, type=str(p.type), parent_caveat_name=caveat.name
            )
            for p in caveat.parameters
        ],
    )


# ---- dependencies ------------------------------------------------------------------------------


def dependencies(schema: Schema, definition: Definition, name: str) -> Iterator[Member]:
    """The members ``definition#name`` is computed from directly."""
    relation = definition.relations.get(name)
    if relation is not None:
        for allowed in relation.allowed:
            if allowed.relation:
                yield allowed.type, allowed.relation
        return
    permission = definition.permissions.get(name)
    if permission is None:
        return
    for node in walk(permission.rewrite):
        if isinstance(node, RelationRef):
            yield definition.name, node.name
        elif isinstance(node, Arrow):
            yield definition.name, node.tupleset
            tupleset = definition.relations.get(node.tupleset)
            for allowed in tupleset.allowed if tupleset else ():
                target = schema.definitions.get(allowed.type)
                if target is not None and target.member(node.target) is not None:
                    yield allowed.type, node.target


def dependent_relations(schema: Schema, start: Member) -> list[pb.ReflectionRelationReference]:
    """Every member ``start`` is computed from, transitively, sorted."""
    seen = _closure(start, lambda m: dependencies(schema, schema.definitions[m[0]], m[1]))
    seen.discard(start)
    return _references(schema, seen)


def computable_permissions(
    schema: Schema, start: Member, definition_prefix: str
) -> list[pb.ReflectionRelationReference]:
    """Every member computed from ``start``, transitively, sorted; ``definition_prefix`` filters."""
    feeds: dict[Member, set[Member]] = {}
    for definition in schema.definitions.values():
        for name in (*definition.relations, *definition.permissions):
            for dependency in dependencies(schema, definition, name):
                feeds.setdefault(dependency, set()).add((definition.name, name))
    seen = _closure(start, lambda m: feeds.get(m, ()))
    seen.discard(start)
    return _references(schema, {m for m in seen if m[0].startswith(definition_prefix)})


def _closure(start: Member, step: Callable[[Member], Iterable[Member]]) -> set[Member]:
    """Every member reachable from ``start`` by ``step`` (``start`` too if on a cycle)."""
    seen: set[Member] = set()
    pending = [start]
    while pending:
        member = pending.pop()
        for found in step(member):
            if found not in seen:
                seen.add(found)
                pending.append(found)
    return seen


def _references(schema: Schema, members: Iterable[Member]) -> list[pb.ReflectionRelationReference]:
    return [
        pb.ReflectionRelationReference(
            definition_name=type_name,
            relation_name=name,
            is_permission=name in schema.definitions[type_name].permissions,
        )
        for type_name, name in sorted(members)
    ]


# ---- diff --------------------------------------------------------------------------------------


def diff(current: Schema, other: Schema) -> list[pb.ReflectionSchemaDiff]:
    """What changes from ``current`` to ``other``, as SpiceDB's DiffSchema lists it."""
    diffs: list[pb.ReflectionSchemaDiff] = []
    for name in sorted(current.definitions.keys() | other.definitions.keys()):
        old, new = current.definitions.get(name), other.definitions.get(name)
        if old is None:
            assert new is not None
            diffs.append(pb.ReflectionSchemaDiff(definition_added=definition_proto(new)))
        elif new is None:
            diffs.append(pb.ReflectionSchemaDiff(definition_removed=definition_proto(old)))
        else:
            diffs.extend(_definition_diff(old, new))
    for name in sorted(current.caveats.keys() | other.caveats.keys()):
        old_caveat, new_caveat = current.caveats.get(name), other.caveats.get(name)
        if old_caveat is None:
            assert new_caveat is not None
            diffs.append(pb.ReflectionSchemaDiff(caveat_added=caveat_proto(new_caveat)))
        elif new_caveat is None:
            diffs.append(pb.ReflectionSchemaDiff(caveat_removed=caveat_proto(old_caveat)))
        else:
            diffs.extend(_caveat_diff(old_caveat, new_caveat))
    return diffs


def _definition_diff(old: Definition, new: Definition) -> Iterator[pb.ReflectionSchemaDiff]:
    name = new.name
    if old.doc != new.doc:
        yield pb.ReflectionSchemaDiff(definition_doc_comment_changed=definition_proto(new))
    for relation_name in sorted(old.relations.keys() | new.relations.keys()):
        a, b = old.relations.get(relation_name), new.relations.get(relation_name)
        if a is None:
            assert b is not None
            yield pb.ReflectionSchemaDiff(relation_added=relation_proto(name, b))
        elif b is None:
            yield pb.ReflectionSchemaDiff(relation_removed=relation_proto(name, a))
        else:
            if a.doc != b.doc:
                yield pb.ReflectionSchemaDiff(relation_doc_comment_changed=relation_proto(name, b))
            for added in (s for s in b.allowed if s not in a.allowed):
                yield pb.ReflectionSchemaDiff(
                    relation_subject_type_added=pb.ReflectionRelationSubjectTypeChange(
                        relation=relation_proto(name, b), changed_subject_type=type_reference(added)
                    )
                )
            for removed in (s for s in a.allowed if s not in b.allowed):
                yield pb.ReflectionSchemaDiff(
                    relation_subject_type_removed=pb.ReflectionRelationSubjectTypeChange(
                        relation=relation_proto(name, b),
                        changed_subject_type=type_reference(removed),
                    )
                )
    for permission_name in sorted(old.permissions.keys() | new.permissions.keys()):
        p, q = old.permissions.get(permission_name), new.permissions.get(permission_name)
        if p is None:
            assert q is not None
            yield pb.ReflectionSchemaDiff(permission_added=permission_proto(name, q))
        elif q is None:
            yield pb.ReflectionSchemaDiff(permission_removed=permission_proto(name, p))
        else:
            if p.doc != q.doc:
                yield pb.ReflectionSchemaDiff(
                    permission_doc_comment_changed=permission_proto(name, q)
                )
            if p.rewrite != q.rewrite:
                yield pb.ReflectionSchemaDiff(permission_expr_changed=permission_proto(name, q))


def _caveat_diff(old: Caveat, new: Caveat) -> Iterator[pb.ReflectionSchemaDiff]:
    reflected = caveat_proto(new)
    if old.doc != new.doc:
        yield pb.ReflectionSchemaDiff(caveat_doc_comment_changed=reflected)
    if old.expression != new.expression:
        yield pb.ReflectionSchemaDiff(caveat_expr_changed=reflected)
    old_types, new_types = old.parameter_types, new.parameter_types
    for parameter in reflected.parameters:
        previous = old_types.get(parameter.name)
        if previous is None:
            yield pb.ReflectionSchemaDiff(caveat_parameter_added=parameter)
        elif str(previous) != parameter.type:
            yield pb.ReflectionSchemaDiff(
                caveat_parameter_type_changed=pb.ReflectionCaveatParameterTypeChange(
                    parameter=parameter, previous_type=str(previous)
                )
            )
    for removed in caveat_proto(old).parameters:
        if removed.name not in new_types:
            yield pb.ReflectionSchemaDiff(caveat_parameter_removed=removed)
