"""Package analysis answers structural questions about a Schema: references, cycles, wildcards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_never

from policyd.schema.ir import (
    Arrow,
    Definition,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    RelationRef,
    Rewrite,
    Schema,
    SelfRef,
    Union,
)


def walk(node: Rewrite) -> Iterator[Rewrite]:
    """Every node of a rewrite, parents before children."""
    yield node
    match node:
        case Union(children=children) | Intersection(children=children):
            for child in children:
                yield from walk(child)
        case Exclusion(base=base, subtract=subtract):
            yield from walk(base)
            yield from walk(subtract)
        case Nil() | SelfRef() | RelationRef() | Arrow():
            pass
        case _:
            assert_never(node)


def permission_cycle(definition: Definition, start: Permission) -> list[str] | None:
    """A chain of permissions from ``start`` back to itself through same-object references.

    Such a permission can never be evaluated: each step needs the next on the
    same object with no relationship in between. Arrows leave the object, so
    they end a chain.
    """
    path: list[str] = [start.name]

    def visit(name: str, seen: frozenset[str]) -> list[str] | None:
        permission = definition.permissions.get(name)
        if permission is None:
            return None
        for node in walk(permission.rewrite):
            if not isinstance(node, RelationRef) or node.name not in definition.permissions:
                continue
            if node.name == start.name:
                return [*path, start.name]
            if node.name in seen:
                continue
            path.append(node.name)
            found = visit(node.name, seen | {node.name})
            if found:
                return found
            path.pop()
        return None

    return visit(start.name, frozenset({start.name}))


def wildcard_source(schema: Schema, type_name: str, relation: str) -> str | None:
    """Name the relation that lets ``type_name#relation`` hold a wildcard, directly or nested.

    SpiceDB forbids such relations on the left of an arrow and as a subject
    relation, because a wildcard cannot stand for a set of concrete objects
    to walk from.
    """
    seen: set[tuple[str, str]] = set()
    stack = [(type_name, relation)]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        rel = schema.relation(*key)
        if rel is None:
            continue
        for allowed in rel.allowed:
            if allowed.wildcard:
                return f"{key[0]}#{key[1]}"
            if allowed.relation is not None:
                stack.append((allowed.type, allowed.relation))
    return None


def can_grant(schema: Schema, definition: Definition, node: Rewrite) -> bool:
    """False when a rewrite is empty whatever is stored (e.g. ``nil``, or ``a & nil``)."""
    seen: set[str] = set()

    def visit(n: Rewrite) -> bool:
        match n:
            case Nil():
                return False
            case SelfRef() | Arrow():
                return True
            case RelationRef(name=name):
                if name in definition.relations:
                    return True
                permission = definition.permissions.get(name)
                if permission is None or name in seen:
                    return False
                seen.add(name)
                return visit(permission.rewrite)
            case Union(children=children):
                return any(visit(c) for c in children)
            case Intersection(children=children):
                return all(visit(c) for c in children)
            case Exclusion(base=base):
                return visit(base)
            case _:
                assert_never(n)

    return visit(node)


def referenced_relations(schema: Schema) -> set[tuple[str, str]]:
    """Every (type, relation) that a permission, arrow or allowed subject relation names."""
    used: set[tuple[str, str]] = set()
    for definition in schema.definitions.values():
        for permission in definition.permissions.values():
            for node in walk(permission.rewrite):
                if isinstance(node, RelationRef):
                    used.add((definition.name, node.name))
                elif isinstance(node, Arrow):
                    used.add((definition.name, node.tupleset))
                    rel = definition.relations.get(node.tupleset)
                    for allowed in rel.allowed if rel else ():
                        used.add((allowed.type, node.target))
        for relation in definition.relations.values():
            for allowed in relation.allowed:
                if allowed.relation is not None:
                    used.add((allowed.type, allowed.relation))
    return used
