"""Package reachability indexes a Schema backwards: from a subject type to what it can reach.

ListObjects walks relationships from the subject up to resources. To do so
set-at-a-time it needs, per (type, member), which relations hold it as a
subject, which permissions name it, and which arrows land on it. Built once
per policy revision. Only positive positions count (every union and
intersection branch, the base of an exclusion): a subject reachable only
through a subtracted branch can never be granted by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import assert_never

from policyd.schema.ir import (
    Arrow,
    Exclusion,
    Intersection,
    Nil,
    RelationRef,
    Rewrite,
    Schema,
    SelfRef,
    Union,
)


def leaves(node: Rewrite) -> Iterator[Rewrite]:
    """The leaves of a rewrite outside every subtracted side: what any grant must pass through."""
    return (leaf for leaf, negations in signed_leaves(node) if not negations)


def signed_leaves(node: Rewrite, negations: int = 0) -> Iterator[tuple[Rewrite, int]]:
    """Every leaf of a rewrite, with how many subtracted sides of exclusions it lies under."""
    match node:
        case Union(children=children) | Intersection(children=children):
            for child in children:
                yield from signed_leaves(child, negations)
        case Exclusion(base=base, subtract=subtract):
            yield from signed_leaves(base, negations)
            yield from signed_leaves(subtract, negations + 1)
        case Nil() | SelfRef() | RelationRef() | Arrow():
            yield node, negations
        case _:
            assert_never(node)


@dataclass(slots=True)
class ReverseIndex:
    """The schema's edges reversed, keyed by what a walk has reached."""

    holders: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """(subject type, subject relation or '') -> relations (type, relation) that may store it."""
    wildcard_holders: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """subject type -> relations that may store ``type:*``."""
    computed: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(type, member) -> permissions of the same type that name the member."""
    arrows: dict[tuple[str, str], list[tuple[str, str, str, str]]] = field(default_factory=dict)
    """(type, member) -> (resource type, tupleset, tupleset subject relation or '', permission)
    for arrows ``tupleset->member`` whose tupleset may hold objects of the type."""
    self_permissions: dict[str, list[str]] = field(default_factory=dict)
    """type -> permissions of that type that grant ``self``."""


def build_reverse_index(schema: Schema) -> ReverseIndex:
    """Reverse every edge of the schema once."""
    index = ReverseIndex()
    for definition in schema.definitions.values():
        for relation in definition.relations.values():
            key = (definition.name, relation.name)
            for allowed in relation.allowed:
                if allowed.wildcard:
                    index.wildcard_holders.setdefault(allowed.type, []).append(key)
                else:
                    holder = (allowed.type, allowed.relation or "")
                    if key not in index.holders.setdefault(holder, []):
                        index.holders[holder].append(key)
        for permission in definition.permissions.values():
            for node in leaves(permission.rewrite):
                _index_leaf(schema, index, definition.name, permission.name, node)
    return index


def _index_leaf(
    schema: Schema, index: ReverseIndex, type_name: str, permission: str, node: Rewrite
) -> None:
    match node:
        case RelationRef(name=name):
            names = index.computed.setdefault((type_name, name), [])
            if permission not in names:
                names.append(permission)
        case Arrow(tupleset=tupleset, target=target):
            relation = schema.relation(type_name, tupleset)
            for allowed in relation.allowed if relation else ():
                if allowed.wildcard:
                    continue
                entry = (type_name, tupleset, allowed.relation or "", permission)
                entries = index.arrows.setdefault((allowed.type, target), [])
                if entry not in entries:
                    entries.append(entry)
        case SelfRef():
            names = index.self_permissions.setdefault(type_name, [])
            if permission not in names:
                names.append(permission)
        case Nil() | Union() | Intersection() | Exclusion():
            pass
        case _:
            assert_never(node)
