"""Package store.validation checks relationships against a compiled schema (writes, policy changes).

Every backend calls the same functions, so they refuse the same writes with
the same messages. A relationship is allowed when its relation is a stored
relation of its resource type and one ``AllowedSubject`` of that relation
matches its subject exactly: type, userset relation or wildcard, caveat name
(or none), and expiry (present exactly when the entry says ``with expiration``).
A caveat context must fit the caveat's parameters (``caveats.context``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from policyd.caveats import ContextError, check_stored_context
from policyd.errors import InvalidRelationshipError
from policyd.relationship import (
    OBJECT_ID,
    WILDCARD,
    Operation,
    Relationship,
    RelationshipUpdate,
)
from policyd.schema.ir import AllowedSubject, Schema


class Shape(NamedTuple):
    """What the schema decides on: a relationship without its ids."""

    resource_type: str
    relation: str
    subject_type: str
    subject_relation: str
    wildcard: bool
    caveat_name: str
    expiring: bool

    def __str__(self) -> str:
        subject = self.subject_type + (
            ":*" if self.wildcard else f"#{self.subject_relation}" if self.subject_relation else ""
        )
        traits = [t for t in (self.caveat_name, "expiration" if self.expiring else "") if t]
        suffix = " with " + " and ".join(traits) if traits else ""
        return f"{self.resource_type}#{self.relation}@{subject}{suffix}"


def shape_of(relationship: Relationship) -> Shape:
    """The shape of one relationship."""
    s = relationship.subject
    return Shape(
        relationship.resource.type,
        relationship.relation,
        s.type,
        s.relation or "",
        s.id == WILDCARD,
        relationship.caveat_name or "",
        relationship.expires_at is not None,
    )


class Validator:
    """Validates relationships against one schema, remembering shapes already found allowed."""

    def __init__(self, schema: Schema | None) -> None:
        self.schema = schema
        self._allowed: set[tuple[str | bool | None, ...]] = set()

    def check(self, relationship: Relationship, where: str) -> None:
        """Raise InvalidRelationshipError naming ``where`` and the field when not allowed."""
        # Bulk imports call this once per relationship (benchmarks/store_bench.py, "import"):
        # a shape seen before only needs its two ids checked; its names are the schema's own.
        s = relationship.subject
        seen = (
            relationship.resource.type,
            relationship.relation,
            s.type,
            s.relation,
            s.id == WILDCARD,
            relationship.caveat_name,
            relationship.expires_at is not None,
        )
        rid, sid = relationship.resource.id, s.id
        if (
            seen not in self._allowed
            or rid == WILDCARD
            or not OBJECT_ID.match(rid)
            or not (sid == WILDCARD or OBJECT_ID.match(sid))
            or (relationship.caveat_context and not relationship.caveat_name)
        ):
            self._check_fully(relationship, where)
            self._allowed.add(seen)
        if relationship.caveat_name and relationship.caveat_context and self.schema is not None:
            caveat = self.schema.caveats[relationship.caveat_name]
            try:
                check_stored_context(
                    caveat.name, caveat.parameter_types, relationship.caveat_context
                )
            except ContextError as e:
                raise InvalidRelationshipError(
                    f"{where}: {relationship}: {e.message}", field=_field(where, "caveat.context")
                ) from e

    def _check_fully(self, relationship: Relationship, where: str) -> None:
        _check_form(relationship, where)
        problem = shape_problem(self.schema, shape_of(relationship))
        if problem is not None:
            field, message = problem
            raise InvalidRelationshipError(
                f"{where}: {relationship}: {message}", field=_field(where, field)
            )

    def check_updates(self, updates: Sequence[RelationshipUpdate]) -> None:
        """Validate a write batch: CREATE/TOUCH against the schema, DELETE for form only."""
        seen: dict[tuple[str, ...], int] = {}
        for i, update in enumerate(updates):
            where = f"updates[{i}]"
            rel = update.relationship
            if update.operation is Operation.DELETE:
                _check_form(rel, where)
            else:
                self.check(rel, where)
            first = seen.setdefault(rel.key, i)
            if first != i:
                raise InvalidRelationshipError(
                    f"{where}: {rel}: the same relationship is already updated "
                    f"by updates[{first}] in this batch",
                    field=f"{where}.relationship",
                )


def _check_form(relationship: Relationship, where: str) -> None:
    """Names and ids well formed (no policy needed); errors say where in the request."""
    try:
        relationship.validate()
    except InvalidRelationshipError as e:
        raise InvalidRelationshipError(
            f"{where}: {relationship}: {e.message}", field=_field(where, e.field)
        ) from e


def _field(where: str, field: str | None) -> str:
    return f"{where}.relationship.{field}" if field else f"{where}.relationship"


def shape_problem(schema: Schema | None, shape: Shape) -> tuple[str, str] | None:
    """Why the schema does not allow this shape, as (field, message), or ``None`` if it does."""
    if schema is None:
        return "resource.type", "no policy has been written yet; write a policy first"
    definition = schema.definitions.get(shape.resource_type)
    if definition is None:
        return "resource.type", f"the policy defines no type {shape.resource_type!r}"
    if shape.relation in definition.permissions:
        return (
            "relation",
            f"{shape.resource_type}#{shape.relation} is a permission; "
            "relationships can only be written to relations",
        )
    relation = definition.relations.get(shape.relation)
    if relation is None:
        return "relation", f"type {shape.resource_type!r} has no relation {shape.relation!r}"
    allowed = relation.allowed
    if shape.caveat_name and shape.caveat_name not in schema.caveats:
        return "caveat.name", f"the policy defines no caveat {shape.caveat_name!r}"
    subject_matches = [a for a in allowed if _subject_matches(a, shape)]
    if not subject_matches:
        return _subject_problem(allowed, shape)
    caveat = shape.caveat_name or None
    caveat_matches = [a for a in subject_matches if a.caveat == caveat]
    if not caveat_matches:
        wanted = sorted({a.caveat or "no caveat" for a in subject_matches})
        have = f"caveat {caveat!r}" if caveat else "no caveat"
        return (
            "caveat.name",
            f"{_subject_text(shape)} on {shape.resource_type}#{shape.relation} needs "
            f"{' or '.join(wanted)}, not {have}",
        )
    if not any(a.expiration == shape.expiring for a in caveat_matches):
        message = "does not allow an expiration" if shape.expiring else "requires an expiration"
        return (
            "expiration",
            f"{shape.resource_type}#{shape.relation} {message} for {_subject_text(shape)}",
        )
    return None


def _subject_matches(allowed: AllowedSubject, shape: Shape) -> bool:
    if allowed.type != shape.subject_type:
        return False
    if shape.wildcard:
        return allowed.wildcard
    return not allowed.wildcard and (allowed.relation or "") == shape.subject_relation


def _subject_text(shape: Shape) -> str:
    if shape.wildcard:
        return f"{shape.subject_type}:*"
    if shape.subject_relation:
        return f"{shape.subject_type}#{shape.subject_relation}"
    return shape.subject_type


def _subject_problem(allowed: Iterable[AllowedSubject], shape: Shape) -> tuple[str, str]:
    names = ", ".join(sorted({str(_strip_traits(a)) for a in allowed})) or "nothing"
    target = f"{shape.resource_type}#{shape.relation}"
    if shape.wildcard:
        field = "subject.id"
    elif shape.subject_relation and any(a.type == shape.subject_type for a in allowed):
        field = "subject.relation"
    else:
        field = "subject.type"
    return field, f"subject {_subject_text(shape)} is not allowed on {target} (allowed: {names})"


def _strip_traits(a: AllowedSubject) -> AllowedSubject:
    return AllowedSubject(a.type, a.relation, a.wildcard)


def orphan_blockers(schema: Schema, shapes: Iterable[tuple[Shape, int]]) -> list[str]:
    """Describe each stored shape (with its count of live relationships) the new schema refuses."""
    blockers = []
    for shape, count in sorted(shapes):
        problem = shape_problem(schema, shape)
        if problem is not None:
            noun = "relationship" if count == 1 else "relationships"
            blockers.append(f"{count} {noun} {shape}: {problem[1]}")
    return blockers


def context_blockers(
    old: Schema | None, new: Schema, keys: Iterable[tuple[str, str, int]]
) -> list[str]:
    """Describe each stored context parameter the new schema drops or retypes.

    ``keys`` holds (caveat name, context key, count of live relationships). A
    policy that renamed ``expires`` to ``until`` would drop every stored
    ``expires`` and let a request grant itself access by supplying ``until``.
    SpiceDB refuses to remove or retype any caveat parameter at all
    (``sanityCheckCaveatChanges``, internal/services/shared/schema.go); policyd
    refuses only changes to parameters that stored contexts set, since the
    others change no stored relationship. A caveat the new schema lacks is
    reported by ``orphan_blockers``.
    """
    blockers = []
    for caveat_name, key, count in sorted(keys):
        caveat = new.caveats.get(caveat_name)
        if caveat is None:
            continue
        subject = "1 relationship" if count == 1 else f"{count} relationships"
        verb, their = ("sets", "its") if count == 1 else ("set", "their")
        where = f"{subject} with caveat {caveat_name} {verb} parameter {key!r} in {their} context"
        new_type = caveat.parameter_types.get(key)
        old_caveat = old.caveats.get(caveat_name) if old is not None else None
        old_type = old_caveat.parameter_types.get(key) if old_caveat is not None else None
        if new_type is None:
            blockers.append(
                f"{where}, which the new policy's {caveat_name} does not declare "
                "(removed or renamed); delete or rewrite those relationships first"
            )
        elif old_type is not None and old_type != new_type:
            blockers.append(f"{where}, which the new policy retypes from {old_type} to {new_type}")
    return blockers
