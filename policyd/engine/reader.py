"""Package reader is the engine's read access to relationships at one revision.

``GraphReader`` is the narrow set of reads the evaluators make, always in one
argument order: the resource side (type, id, relation), then the subject side
(type, id, relation), as the store orders a relationship's key. Three
readers serve it: ``IndexReader`` from the in-memory index (the hot path),
``StoreReader`` from a store's ``SnapshotReader`` (snapshots the index
cannot serve), and ``TracingReader``, which wraps either for Explain so that
every relationship a decision relies on arrives carrying its own key, and
tracing costs the plans nothing in their signatures.

The ``*edge*`` reads are Check's hot path and take their strings
positionally (keyword arguments cost a dict per call in CPython); the rest
take the subject side by keyword, so swapped strings fail loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from policyd.engine.index import Edge, RelationshipIndex, edge_of, relationship_of
from policyd.relationship import Relationship, RelationshipKey
from policyd.store.base import Revision, SnapshotReader


class GraphReader(Protocol):
    """Relationship reads at one fixed revision, as the evaluators need them.

    The ``*edge*`` methods return relationship values (``True`` for
    unconditional, an ``Edge`` for caveated or expiring) without building
    Relationship objects. The rest serve lookups and Expand. Nothing here
    orders its answer unless it says so.
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
        """(subject id, value) of each live ``rtype:rid#relation@stype:…[#srel]``."""
        ...

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation or '', value) of each live ``rtype:rid#relation@…``."""
        ...

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        ...

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` holding any of the subjects in ``relation``."""
        ...

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[Sequence[str]]]:
        """``resource_ids`` as a set plus ascending runs (large answers need not be sorted)."""
        ...

    def subject_id_runs(
        self, rtype: str, rid: str, relation: str, *, subject_type: str, subject_relation: str
    ) -> tuple[set[str], list[Sequence[str]]]:
        """Ids of the live ``rtype:rid#relation@subject_type:…[#subject_relation]``.

        A set, plus ascending runs: a large group's members need not be sorted to page them.
        """
        ...

    def subjects(
        self, rtype: str, rid: str, relation: str, *, subject_type: str | None = None
    ) -> list[Relationship]:
        """Every live ``rtype:rid#relation@…``, optionally only subjects of one type."""
        ...


class StoreReader:
    """A GraphReader over a store snapshot, for revisions the index cannot serve."""

    def __init__(self, snapshot: SnapshotReader) -> None:
        self.snapshot = snapshot
        self.revision = snapshot.revision

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The live relationship with exactly this key, or False."""
        found = self.snapshot.get((rtype, rid, relation, stype, sid, srel))
        return False if found is None else edge_of(found)

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of each live relationship to subjects of one type and relation."""
        return [
            (r.subject.id, edge_of(r))
            for r in self.subjects(rtype, rid, relation, subject_type=stype)
            if (r.subject.relation or "") == srel
        ]

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of each live relationship on resource#relation."""
        return [
            (r.subject.type, r.subject.id, r.subject.relation or "", edge_of(r))
            for r in self.subjects(rtype, rid, relation)
        ]

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        found = self._resources(rtype, relation, stype, (sid,), srel or None)
        return [(r.resource.id, edge_of(r)) for r in found]

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` holding any of the subjects in ``relation``."""
        found = self._resources(rtype, relation, subject_type, list(subject_ids), subject_relation)
        return {r.resource.id for r in found}

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[Sequence[str]]]:
        """Every id in the set: the store has no sorted runs to offer."""
        ids = self.resource_ids(
            rtype,
            relation,
            subject_type=subject_type,
            subject_ids=subject_ids,
            subject_relation=subject_relation,
        )
        return ids, []

    def subject_id_runs(
        self, rtype: str, rid: str, relation: str, *, subject_type: str, subject_relation: str
    ) -> tuple[set[str], list[Sequence[str]]]:
        """Every id in the set: the store has no sorted runs to offer."""
        edges = self.subject_edges(rtype, rid, relation, subject_type, subject_relation)
        return {sid for sid, _ in edges}, []

    def subjects(
        self, rtype: str, rid: str, relation: str, *, subject_type: str | None = None
    ) -> list[Relationship]:
        """Every live ``rtype:rid#relation@…`` of the subject type, if one is given."""
        return self.snapshot.subjects_of(rtype, (rid,), relation, subject_type=subject_type)

    def _resources(
        self,
        rtype: str,
        relation: str,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None,
    ) -> list[Relationship]:
        """Every live relationship from these subjects to resources of one type and relation."""
        if not subject_ids:
            return []
        return self.snapshot.resources_of(
            rtype,
            relation,
            subject_type=subject_type,
            subject_ids=subject_ids,
            subject_relation=subject_relation,
        )


class IndexReader:
    """A GraphReader over the in-memory index at its revision, with one "now" per request."""

    def __init__(self, index: RelationshipIndex) -> None:
        self.index = index
        self.revision = index.revision
        self.now = index.clock()

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The live relationship with exactly this key, or False."""
        return self.index.edge(rtype, rid, relation, stype, sid, srel, self.now)

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of each live relationship to subjects of one type and relation."""
        return self.index.subject_edges(rtype, rid, relation, stype, srel, self.now)

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of each live relationship on resource#relation."""
        return self.index.all_subject_edges(rtype, rid, relation, self.now)

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        return self.index.resource_edges(rtype, relation, stype, sid, srel, self.now)

    def subject_id_runs(
        self, rtype: str, rid: str, relation: str, *, subject_type: str, subject_relation: str
    ) -> tuple[set[str], list[Sequence[str]]]:
        """A large slot as its sorted copy, unless expiring relationships need filtering."""
        index = self.index
        if index.expiring:
            edges = self.subject_edges(rtype, rid, relation, subject_type, subject_relation)
            return {sid for sid, _ in edges}, []
        return index.subject_id_runs(rtype, rid, relation, subject_type, subject_relation)

    def subjects(
        self, rtype: str, rid: str, relation: str, *, subject_type: str | None = None
    ) -> list[Relationship]:
        """Every live ``rtype:rid#relation@…``, optionally of one subject type."""
        return [
            relationship_of((rtype, rid, relation, stype, sid, srel), v)
            for stype, sid, srel, v in self.all_subject_edges(rtype, rid, relation)
            if subject_type is None or stype == subject_type
        ]

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[Sequence[str]]]:
        """Like ``resource_ids``, but large slots come back as ascending runs.

        They are not copied into the set, so a caller after the first page of
        ids need not sort them all.
        """
        index = self.index
        if index.expiring:
            ids = self.resource_ids(
                rtype,
                relation,
                subject_type=subject_type,
                subject_ids=subject_ids,
                subject_relation=subject_relation,
            )
            return ids, []
        return index.resource_id_runs(rtype, relation, subject_type, subject_ids, subject_relation)

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` related by ``relation`` to any of the subjects (no objects built)."""
        return self.index.resource_ids(
            rtype, relation, subject_type, subject_ids, subject_relation, self.now
        )


class RecordingReader(IndexReader):
    """An IndexReader that notes the key of every read, for the decision cache (cache.py).

    Forward reads note ``(resource type, id, relation)``, reverse reads
    ``(subject type, id, relation, resource type, relation)``: the places a
    changed relationship can alter what the read returns.
    """

    def __init__(self, index: RelationshipIndex, note: Callable[[tuple[str, ...]], None]) -> None:
        super().__init__(index)
        self.note = note

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The live relationship with exactly this key, or False; noted."""
        self.note((rtype, rid, relation))
        return self.index.edge(rtype, rid, relation, stype, sid, srel, self.now)

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of each live relationship to subjects of one kind; noted."""
        self.note((rtype, rid, relation))
        return self.index.subject_edges(rtype, rid, relation, stype, srel, self.now)

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of each live relationship; noted."""
        self.note((rtype, rid, relation))
        return self.index.all_subject_edges(rtype, rid, relation, self.now)

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``; noted."""
        self.note((stype, sid, srel, rtype, relation))
        return self.index.resource_edges(rtype, relation, stype, sid, srel, self.now)


@dataclass(frozen=True, slots=True)
class TracedEdge(Edge):
    """A relationship value as Explain sees it: the value, and the key it was found under.

    An unconditional relationship arrives as a TracedEdge with no caveat and
    no expiry, which every evaluator grants as it grants ``True``.
    """

    key: RelationshipKey = ("", "", "", "", "", "")
    value: bool | Edge = True

    def relationship(self) -> Relationship:
        """The relationship this value was read as."""
        return relationship_of(self.key, self.value)


def traced(key: RelationshipKey, value: bool | Edge) -> TracedEdge:
    """``value`` found under ``key``, carrying both."""
    if isinstance(value, Edge):
        return TracedEdge(value.caveat_name, value.context, value.expires_at, key, value)
    return TracedEdge(None, {}, None, key, value)


class TracingReader:
    """A GraphReader that hands out every found relationship as a ``TracedEdge`` (Explain)."""

    def __init__(self, reader: GraphReader) -> None:
        self.reader = reader
        self.revision = reader.revision
        # Lookups and Expand are not traced: the wrapped reader answers them as it is.
        self.resource_ids = reader.resource_ids
        self.resource_id_runs = reader.resource_id_runs
        self.subject_id_runs = reader.subject_id_runs
        self.subjects = reader.subjects

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> bool | Edge:
        """The relationship with exactly this key, traced, or False."""
        found = self.reader.edge(rtype, rid, relation, stype, sid, srel)
        if found is False:
            return False
        return traced((rtype, rid, relation, stype, sid, srel), found)

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, traced value) of each relationship to subjects of one type and relation."""
        return [
            (sid, traced((rtype, rid, relation, stype, sid, srel), value))
            for sid, value in self.reader.subject_edges(rtype, rid, relation, stype, srel)
        ]

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, traced value) of each relationship on resource#relation."""
        return [
            (stype, sid, srel, traced((rtype, rid, relation, stype, sid, srel), value))
            for stype, sid, srel, value in self.reader.all_subject_edges(rtype, rid, relation)
        ]

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, traced value) of each ``rtype:…#relation@stype:sid[#srel]``."""
        return [
            (rid, traced((rtype, rid, relation, stype, sid, srel), value))
            for rid, value in self.reader.resource_edges(rtype, relation, stype, sid, srel)
        ]
