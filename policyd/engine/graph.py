"""Package graph is the engine's read access to relationships at one revision.

``GraphReader`` is the narrow set of reads the engine's evaluators make; it
is the seam where an in-memory index can stand in for the store. ``StoreGraph``
serves every read from a ``Store`` at a fixed revision.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

from policyd.engine.index import Edge, edge_of
from policyd.relationship import Relationship
from policyd.store.base import Revision, Store


class GraphReader(Protocol):
    """Relationship reads at one fixed revision, as the evaluators need them.

    The ``*edge*`` methods are the Check hot path: they return relationship
    values (``True`` for unconditional, an ``Edge`` for caveated or expiring)
    without building Relationship objects. The rest serve lookups and Expand.
    """

    revision: Revision

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The live relationship with exactly this key: True, its Edge, or False if absent."""
        ...

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of each live ``resource#relation@stype:…[#srel]``."""
        ...

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation or '', value) of each live ``resource#relation@…``."""
        ...

    def resource_edges(
        self, stype: str, sid: str, srel: str, rtype: str, relation: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        ...

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` holding any of the subjects in ``relation``."""
        ...

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[list[str]]]:
        """``resource_ids`` as a set plus ascending runs (large answers need not be sorted)."""
        ...

    def subjects(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str | None
    ) -> list[Relationship]:
        """Every live ``resource#relation@…``, optionally only subjects of one type."""
        ...


class StoreGraph:
    """A GraphReader that asks the store for every read (snapshots the index cannot serve)."""

    def __init__(self, store: Store, revision: Revision) -> None:
        self.store = store
        self.revision = revision

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The live relationship with exactly this key, or False."""
        found = self.store.get((rtype, rid, relation, stype, sid, srel), self.revision)
        return False if found is None else edge_of(found)

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of each live relationship to subjects of one type and relation."""
        return [
            (r.subject.id, edge_of(r))
            for r in self.subjects(rtype, rid, relation, stype)
            if (r.subject.relation or "") == srel
        ]

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of each live relationship on resource#relation."""
        return [
            (r.subject.type, r.subject.id, r.subject.relation or "", edge_of(r))
            for r in self.subjects(rtype, rid, relation, None)
        ]

    def resource_edges(
        self, stype: str, sid: str, srel: str, rtype: str, relation: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        found = self._resources(rtype, relation, stype, (sid,), srel or None)
        return [(r.resource.id, edge_of(r)) for r in found]

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` holding any of the subjects in ``relation``."""
        found = self._resources(rtype, relation, stype, list(subject_ids), subject_relation)
        return {r.resource.id for r in found}

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[list[str]]]:
        """Every id in the set: the store has no sorted runs to offer."""
        return self.resource_ids(rtype, relation, stype, subject_ids, subject_relation), []

    def subjects(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str | None
    ) -> list[Relationship]:
        """Every live ``resource#relation@…`` of the subject type, if one is given."""
        return self.store.subjects_of(
            resource_type, (resource_id,), relation, self.revision, subject_type=subject_type
        )

    def _resources(
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
