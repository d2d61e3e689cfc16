"""Package graph is the engine's read access to relationships at one revision.

``GraphReader`` is the narrow set of reads the engine's evaluators make; it
is the seam where an in-memory index can stand in for the store. ``StoreGraph``
serves every read from a ``Store`` at a fixed revision.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from policyd.relationship import Relationship
from policyd.store.base import Revision, Store


class GraphReader(Protocol):
    """Relationship reads at one fixed revision, as the evaluators need them."""

    revision: Revision

    def get(
        self,
        resource_type: str,
        resource_id: str,
        relation: str,
        subject_type: str,
        subject_id: str,
        subject_relation: str,
    ) -> Relationship | None:
        """The live relationship with exactly this key ('' for no subject relation)."""
        ...

    def subjects(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str | None
    ) -> list[Relationship]:
        """Every live ``resource#relation@…``, optionally only subjects of one type."""
        ...

    def subjects_of_many(
        self, resource_type: str, resource_ids: Collection[str], relation: str
    ) -> list[Relationship]:
        """Every live relationship on any of the resources, in one read."""
        ...

    def resources(
        self,
        resource_type: str,
        relation: str,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None,
    ) -> list[Relationship]:
        """Every live ``resource_type:…#relation@subject_type:id[#subject_relation]``."""
        ...


class StoreGraph:
    """A GraphReader that asks the store for every read."""

    def __init__(self, store: Store, revision: Revision) -> None:
        self.store = store
        self.revision = revision

    def get(
        self,
        resource_type: str,
        resource_id: str,
        relation: str,
        subject_type: str,
        subject_id: str,
        subject_relation: str,
    ) -> Relationship | None:
        """The live relationship with exactly this key."""
        key = (resource_type, resource_id, relation, subject_type, subject_id, subject_relation)
        return self.store.get(key, self.revision)

    def subjects(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str | None
    ) -> list[Relationship]:
        """Every live ``resource#relation@…`` of the subject type, if one is given."""
        return self.store.subjects_of(
            resource_type, (resource_id,), relation, self.revision, subject_type=subject_type
        )

    def subjects_of_many(
        self, resource_type: str, resource_ids: Collection[str], relation: str
    ) -> list[Relationship]:
        """Every live relationship on any of the resources."""
        if not resource_ids:
            return []
        return self.store.subjects_of(resource_type, resource_ids, relation, self.revision)

    def resources(
        self,
        resource_type: str,
        relation: str,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None,
    ) -> list[Relationship]:
        """Every live relationship from these subjects to resources of one type and relation."""
        if not subject_ids:
            return []
        return self.store.resources_of(
            resource_type, relation, subject_type, subject_ids, subject_relation, self.revision
        )
