"""Package ir holds the compiled policy: definitions, relations, permissions, caveats.

The IR is what the store validates writes against and what the engine plans
from. It carries meaning, not syntax: unions and intersections are flattened,
``#...`` is no relation, ``.any()`` and ``->`` are the same arrow. Source spans
ride along for error messages but take no part in equality, so a policy and its
formatted form compile to equal schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from policyd.errors import SourceSpan


class ArrowKind(Enum):
    """How an arrow combines the objects it walks to: any one suffices, or all must agree."""

    ANY = "any"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Nil:
    """The empty set: ``nil``."""


@dataclass(frozen=True, slots=True)
class SelfRef:
    """The resource itself as a subject: ``self`` (with ``use self``)."""


@dataclass(frozen=True, slots=True)
class RelationRef:
    """A relation or permission on the same resource (SpiceDB's computed userset)."""

    name: str
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Arrow:
    """Walk ``tupleset`` to other objects and evaluate ``target`` there (tuple-to-userset)."""

    tupleset: str
    target: str
    kind: ArrowKind = ArrowKind.ANY
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Union:
    """Subjects in any child: ``a + b``."""

    children: tuple[Rewrite, ...]


@dataclass(frozen=True, slots=True)
class Intersection:
    """Subjects in every child: ``a & b``."""

    children: tuple[Rewrite, ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Subjects in ``base`` but not in ``subtract``: ``a - b``."""

    base: Rewrite
    subtract: Rewrite


Rewrite: TypeAlias = Nil | SelfRef | RelationRef | Arrow | Union | Intersection | Exclusion


@dataclass(frozen=True, slots=True)
class AllowedSubject:
    """One allowed subject type of a relation: ``user``, ``group#member``, ``user:*``, traits."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    caveat: str | None = None
    expiration: bool = False
    span: SourceSpan | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = self.type
        if self.wildcard:
            text += ":*"
        elif self.relation:
            text += f"#{self.relation}"
        traits = [t for t in (self.caveat, "expiration" if self.expiration else None) if t]
        if traits:
            text += " with " + " and ".join(traits)
        return text


@dataclass(frozen=True, slots=True)
class Relation:
    """A stored relation: which subjects may be written to it."""

    name: str
    allowed: tuple[AllowedSubject, ...]
    doc: str = ""
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Permission:
    """A computed permission: a rewrite over relations, permissions and arrows."""

    name: str
    rewrite: Rewrite
    doc: str = ""
    subject_types: tuple[str, ...] = ()
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Definition:
    """An object type with its relations and permissions, each name used once across both."""

    name: str
    relations: Mapping[str, Relation]
    permissions: Mapping[str, Permission]
    doc: str = ""
    span: SourceSpan | None = field(default=None, compare=False)

    def member(self, name: str) -> Relation | Permission | None:
        """The relation or permission called ``name``, if any."""
        return self.relations.get(name) or self.permissions.get(name)


# SpiceDB's caveat parameter types and how many type arguments each takes.
CAVEAT_TYPE_ARITY = {
    "any": 0,
    "bool": 0,
    "bytes": 0,
    "double": 0,
    "duration": 0,
    "int": 0,
    "ipaddress": 0,
    "string": 0,
    "timestamp": 0,
    "uint": 0,
    "list": 1,
    "map": 1,
}


@dataclass(frozen=True, slots=True)
class CaveatType:
    """A CEL parameter type such as ``int``, ``list<string>``, ``map<any>`` or ``ipaddress``."""

    name: str
    args: tuple[CaveatType, ...] = ()

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}<{', '.join(str(a) for a in self.args)}>"

    @property
    def is_valid(self) -> bool:
        """True when the type and all its arguments are known, with the right arity."""
        arity = CAVEAT_TYPE_ARITY.get(self.name)
        return arity == len(self.args) and all(a.is_valid for a in self.args)


@dataclass(frozen=True, slots=True)
class CaveatParameter:
    """A named, typed caveat parameter."""

    name: str
    type: CaveatType


@dataclass(frozen=True, slots=True)
class Caveat:
    """A named CEL condition over typed parameters, attached to relationships with ``with``."""

    name: str
    parameters: tuple[CaveatParameter, ...]
    expression: str
    doc: str = ""
    span: SourceSpan | None = field(default=None, compare=False)
    expression_span: SourceSpan | None = field(default=None, compare=False)

    @property
    def parameter_types(self) -> dict[str, CaveatType]:
        """Parameter name to type, in declaration order."""
        return {p.name: p.type for p in self.parameters}


@dataclass(frozen=True, slots=True)
class Schema:
    """A compiled policy: every definition and caveat by name."""

    definitions: Mapping[str, Definition]
    caveats: Mapping[str, Caveat] = field(default_factory=dict)

    def definition(self, name: str) -> Definition | None:
        """The definition called ``name``, if any."""
        return self.definitions.get(name)

    def relation(self, type_name: str, relation: str) -> Relation | None:
        """The stored relation ``type_name#relation``, if the schema defines one."""
        definition = self.definitions.get(type_name)
        return definition.relations.get(relation) if definition else None
