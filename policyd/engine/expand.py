"""Package expand builds the userset tree of a permission on one resource (SpiceDB's Expand).

Permissions expand through their rewrite: computed members and arrows are
followed, relations become leaves listing their stored subjects. Userset
subjects in a leaf are shown, not expanded further, as SpiceDB does.
"""

from __future__ import annotations

from typing import assert_never

from policyd.decisions import ExpandKind, ExpandNode
from policyd.engine.deadline import Steps
from policyd.engine.reader import GraphReader
from policyd.errors import MaxDepthExceededError, ResourceExhaustedError
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
    schema: Schema,
    reader: GraphReader,
    resource: ObjectRef,
    member: str,
    max_depth: int,
    max_nodes: int,
) -> Steps[ExpandNode]:
    """The tree of ``resource#member``, with a checkpoint per node.

    Raises (from the steps):
        ResourceExhaustedError: the tree would hold more than ``max_nodes`` nodes
            and relationships; raised as soon as the count passes it, not after
            building (and failing to send) a huge reply.
        MaxDepthExceededError: arrows nest deeper than ``max_depth``.
    """
    expander = _Expander(schema, reader, max_depth, max_nodes, f"{resource}#{member}")
    return expander.member(resource.type, resource.id, member, 0)


class _Expander:
    def __init__(
        self, schema: Schema, reader: GraphReader, max_depth: int, max_nodes: int, root: str
    ) -> None:
        self.schema = schema
        self.reader = reader
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.root = root
        self.count = 0

    def _count(self, amount: int) -> None:
        self.count += amount
        if self.count > self.max_nodes:
            raise ResourceExhaustedError(
                f"the expand tree of {self.root} holds more than {self.max_nodes:,} nodes and "
                "relationships (the engine's max_expand_nodes); list subjects instead, page "
                "by page"
            )

    def member(self, type_name: str, rid: str, name: str, depth: int) -> Steps[ExpandNode]:
        yield
        target = f"{type_name}:{rid}#{name}"
        if depth > self.max_depth:
            raise MaxDepthExceededError(
                f"expanding {target} needs more than {self.max_depth} levels"
            )
        definition = self.schema.definition(type_name)
        permission = definition.permissions.get(name) if definition else None
        if permission is None:
            found = self.reader.subjects(type_name, rid, name)
            self._count(1 + len(found))
            return ExpandNode(ExpandKind.LEAF, target, relationships=tuple(found))
        return (yield from self.rewrite(type_name, rid, target, permission.rewrite, depth))

    def rewrite(
        self, type_name: str, rid: str, target: str, node: Rewrite, depth: int
    ) -> Steps[ExpandNode]:
        self._count(1)
        match node:
            case Nil():
                return ExpandNode(ExpandKind.LEAF, target)
            case SelfRef():
                return ExpandNode(ExpandKind.LEAF, f"{type_name}:{rid}")
            case RelationRef(name=name):
                return (yield from self.member(type_name, rid, name, depth + 1))
            case Arrow(tupleset=tupleset, target=arrow_target):
                children = []
                for rel in self.reader.subjects(type_name, rid, tupleset):
                    if self._has(rel.subject.type, arrow_target):
                        child = yield from self.member(
                            rel.subject.type, rel.subject.id, arrow_target, depth + 1
                        )
                        children.append(child)
                kind = ExpandKind.INTERSECTION if node.kind.value == "all" else ExpandKind.UNION
                return ExpandNode(
                    kind, f"{type_name}:{rid}#{tupleset}->{arrow_target}", tuple(children)
                )
            case Union(children=parts) | Intersection(children=parts):
                children = []
                for part in parts:
                    children.append((yield from self.rewrite(type_name, rid, target, part, depth)))
                kind = ExpandKind.UNION if isinstance(node, Union) else ExpandKind.INTERSECTION
                return ExpandNode(kind, target, tuple(children))
            case Exclusion(base=base, subtract=subtract):
                kept = yield from self.rewrite(type_name, rid, target, base, depth)
                removed = yield from self.rewrite(type_name, rid, target, subtract, depth)
                return ExpandNode(ExpandKind.EXCLUSION, target, (kept, removed))
            case _:
                assert_never(node)

    def _has(self, type_name: str, member: str) -> bool:
        definition = self.schema.definition(type_name)
        return definition is not None and definition.member(member) is not None
