"""Package filters holds the selections of relationships both sides of the wire share.

A ``RelationshipFilter`` picks relationships for Read, DeleteRelationships and
write preconditions; a ``Precondition`` says whether a write needs a match or
its absence. The client builds them, the API decodes them, the store runs
them, so they live at the bottom with ``Relationship`` and depend on nothing
above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from policyd.errors import InvalidRequestError
from policyd.relationship import (
    KEY_FIELDS,
    OBJECT_ID,
    RELATION_NAME,
    TYPE_NAME,
    WILDCARD,
    Relationship,
)


@dataclass(frozen=True, slots=True)
class RelationshipFilter:
    """Selects relationships; every field left ``None`` matches anything.

    ``subject_relation`` is ``None`` for any subject relation and ``""`` for
    subjects without one (``user:alice`` but not ``group:eng#member``).
    """

    resource_type: str | None = None
    resource_id: str | None = None
    relation: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    subject_relation: str | None = None

    def is_empty(self) -> bool:
        """True when the filter matches every relationship."""
        return all(v is None for v in self.values())

    def validate(self, field: str = "filter") -> None:
        """Raise InvalidRequestError naming ``field.<part>`` for a malformed value.

        A value that no relationship could hold would match nothing, so a delete
        by it would silently delete nothing; it is refused instead. A subject id
        may be ``*`` (wildcard relationships), a subject relation ``""`` (none).
        """
        parts = (
            ("resource_type", self.resource_type, TYPE_NAME),
            ("resource_id", self.resource_id, OBJECT_ID),
            ("relation", self.relation, RELATION_NAME),
            ("subject_type", self.subject_type, TYPE_NAME),
            ("subject_id", None if self.subject_id == WILDCARD else self.subject_id, OBJECT_ID),
            ("subject_relation", self.subject_relation or None, RELATION_NAME),
        )
        for name, value, pattern in parts:
            if value is not None and not pattern.fullmatch(value):
                what = name.replace("_", " ")
                raise InvalidRequestError(f"invalid {what} {value!r}", field=f"{field}.{name}")

    def values(self) -> tuple[str | None, ...]:
        """The six fields in key order."""
        return (
            self.resource_type,
            self.resource_id,
            self.relation,
            self.subject_type,
            self.subject_id,
            self.subject_relation,
        )

    def matches(self, relationship: Relationship) -> bool:
        """True when ``relationship`` satisfies every field that is set."""
        return all(
            want is None or want == have
            for want, have in zip(self.values(), relationship.key, strict=True)
        )

    def __str__(self) -> str:
        fields = zip(KEY_FIELDS, self.values(), strict=True)
        parts = [f"{n}={v!r}" for n, v in fields if v is not None]
        return "{" + ", ".join(parts) + "}"


class PreconditionKind(Enum):
    """Whether a precondition needs a matching relationship or the absence of one."""

    MUST_MATCH = "must_match"
    MUST_NOT_MATCH = "must_not_match"


@dataclass(frozen=True, slots=True)
class Precondition:
    """A condition on the head revision, checked inside the write transaction."""

    kind: PreconditionKind
    filter: RelationshipFilter

    @classmethod
    def must_match(cls, relationship_filter: RelationshipFilter) -> Precondition:
        """Require at least one live relationship matching the filter."""
        return cls(PreconditionKind.MUST_MATCH, relationship_filter)

    @classmethod
    def must_not_match(cls, relationship_filter: RelationshipFilter) -> Precondition:
        """Require that no live relationship matches the filter."""
        return cls(PreconditionKind.MUST_NOT_MATCH, relationship_filter)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.filter}"
