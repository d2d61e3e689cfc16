"""Package expand builds the userset tree of a permission on one resource (SpiceDB's Expand).

Permissions expand through their rewrite: computed members and arrows are
followed, relations become leaves listing their stored subjects. Userset
subjects in a leaf are shown, not expanded further, as SpiceDB does.
"""

from __future__ import annotations

from typing import assert_never

from policyd.decisions import ExpandKind, ExpandNode
from policyd.engine.reader import GraphReader
from policyd.errors import MaxDepthExceededError
from policyd.relationship import ObjectRef
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


def expand(
    schema: Schema, reader: GraphReader, resource: ObjectRef, member: str, max_depth: int
) -> ExpandNode:
    """The tree of ``resource#member``."""
    return _Expander(schema, reader, max_depth).member(resource.type, resource.id, member, 0)


class _Expander:
    def __init__(self, schema: Schema, reader: GraphReader, max_depth: int) -> None:
        self.schema = schema
        self.reader = reader
        self.max_depth = max_depth

    def member(self, type_name: str, rid: str, name: str, depth: int) -> ExpandNode:
        target = f"{type_name}:{rid}#{name}"
        if depth > self.max_depth:
            raise MaxDepthExceededError(
                f"expanding {target} needs more than {self.max_depth} levels"
            )
        definition = self.schema.definition(type_name)
        permission = definition.permissions.get(name) if definition else None
        if permission is None:
            found = self.reader.subjects(type_name, rid, name)
            return ExpandNode(ExpandKind.LEAF, target, relationships=tuple(found))
        return self.rewrite(type_name, rid, target, permission.rewrite, depth)

    def rewrite(
        self, type_name: str, rid: str, target: str, node: Rewrite, depth: int
    ) -> ExpandNode:
        match node:
            case Nil():
                return ExpandNode(ExpandKind.LEAF, target)
            case SelfRef():
                return ExpandNode(ExpandKind.LEAF, f"{type_name}:{rid}")
            case RelationRef(name=name):
                return self.member(type_name, rid, name, depth + 1)
            case Arrow(tupleset=tupleset, target=arrow_target):
                children = tuple(
                    self.member(rel.subject.type, rel.subject.id, arrow_target, depth + 1)
                    for rel in self.reader.subjects(type_name, rid, tupleset)
                    if self._has(rel.subject.type, arrow_target)
                )
                kind = ExpandKind.INTERSECTION if node.kind.value == "all" else ExpandKind.UNION
                return ExpandNode(kind, f"{type_name}:{rid}#{tupleset}->{arrow_target}", children)
            case Union(children=children):
                return ExpandNode(
                    ExpandKind.UNION,
                    target,
                    tuple(self.rewrite(type_name, rid, target, c, depth) for c in children),
                )
            case Intersection(children=children):
                return ExpandNode(
                    ExpandKind.INTERSECTION,
                    target,
                    tuple(self.rewrite(type_name, rid, target, c, depth) for c in children),
                )
            case Exclusion(base=base, subtract=subtract):
                return ExpandNode(
                    ExpandKind.EXCLUSION,
                    target,
                    (
                        self.rewrite(type_name, rid, target, base, depth),
                        self.rewrite(type_name, rid, target, subtract, depth),
                    ),
                )
            case _:
                assert_never(node)

    def _has(self, type_name: str, member: str) -> bool:
        definition = self.schema.definition(type_name)
        return definition is not None and definition.member(member) is not None
