"""Package index keeps live relationships in memory, both directions, following the change log.

Check is called on every read of every permissioned record, and a SQL query
per step of a graph walk costs more than the whole decision budget. So each
process loads the relationships once (an export at one revision) and then
applies the store's change log, and the evaluators read dicts instead of
tables (benchmarks/engine_bench.py shows the difference).

Layout, chosen to keep memory per relationship small: one nested dict per
direction whose innermost keys are the plain, interned object ids, and whose
values are ``True`` for an unconditional relationship or an ``Edge`` holding
its caveat and expiry.

    forward[(resource_type, resource_id, relation)][(subject_type, subject_relation)][subject_id]
    reverse[(subject_type, subject_id, subject_relation)][(resource_type, relation)][resource_id]

Readers never iterate a dict that a writer is changing: iteration copies
under the lock, and writers change dicts only under it. Point lookups need no
lock. Expired relationships stay in the dicts until the store's change log or
a reload drops them, and every read filters them out by time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from policyd.relationship import ObjectRef, Relationship, SubjectRef
from policyd.store.base import ChangeKind, Revision, Store

_intern = sys.intern


@dataclass(frozen=True, slots=True)
class Edge:
    """The conditions of a relationship: a caveat with its stored context, and/or an expiry."""

    caveat_name: str | None
    context: dict[str, Any]
    expires_at: float | None


EdgeValue: TypeAlias = "bool | Edge"
"""``True`` for an unconditional relationship, an Edge for a conditional one; False: absent."""

_Inner: TypeAlias = dict[str, "bool | Edge"]


def edge_of(relationship: Relationship) -> bool | Edge:
    """The stored value for a relationship."""
    if relationship.caveat_name is None and relationship.expires_at is None:
        return True
    expires = relationship.expires_at.timestamp() if relationship.expires_at else None
    return Edge(relationship.caveat_name, relationship.caveat_context, expires)


def _expires(value: bool | Edge) -> bool:
    return value is not True and value.expires_at is not None  # type: ignore[union-attr]


def live(value: bool | Edge, now: float) -> bool:
    """False for a relationship that has expired by ``now``."""
    return value is True or value.expires_at is None or value.expires_at > now  # type: ignore[union-attr]


class RelationshipIndex:
    """All live relationships at ``revision``, in memory, in both directions."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.revision: Revision = 0
        self.clock = clock
        self.lock = threading.Lock()
        self.forward: dict[tuple[str, str, str], dict[tuple[str, str], _Inner]] = {}
        self.reverse: dict[tuple[str, str, str], dict[tuple[str, str], _Inner]] = {}
        self.size = 0
        self.expiring = 0
        """How many relationships carry an expiry; while 0, reads skip the time filter."""
        self._listeners: list[Callable[[Relationship, bool], None]] = []

    def on_change(self, listener: Callable[[Relationship, bool], None]) -> None:
        """Call ``listener(relationship, added)`` after each add or remove (for derived indexes)."""
        self._listeners.append(listener)

    # ---- writing ---------------------------------------------------------------------------

    def add(self, rel: Relationship) -> None:
        """Insert or replace one relationship; call with ``lock`` held."""
        value = edge_of(rel)
        r, s = rel.resource, rel.subject
        rtype, rid, relation = _intern(r.type), _intern(r.id), _intern(rel.relation)
        stype, sid, srel = _intern(s.type), _intern(s.id), _intern(s.relation or "")
        inner = self.forward.setdefault((rtype, rid, relation), {}).setdefault((stype, srel), {})
        previous = inner.get(sid)
        if previous is None:
            self.size += 1
        elif _expires(previous):
            self.expiring -= 1
        if _expires(value):
            self.expiring += 1
        inner[sid] = value
        self.reverse.setdefault((stype, sid, srel), {}).setdefault((rtype, relation), {})[rid] = (
            value
        )
        for listener in self._listeners:
            listener(rel, True)

    def remove(self, rel: Relationship) -> None:
        """Delete one relationship if present; call with ``lock`` held."""
        r, s = rel.resource, rel.subject
        srel = s.relation or ""
        fkey = (r.type, r.id, rel.relation)
        by_type = self.forward.get(fkey)
        inner = by_type.get((s.type, srel)) if by_type else None
        previous = inner.pop(s.id, None) if inner is not None else None
        if inner is None or previous is None:
            return
        self.size -= 1
        if _expires(previous):
            self.expiring -= 1
        if not inner and by_type is not None:
            del by_type[(s.type, srel)]
            if not by_type:
                del self.forward[fkey]
        rkey = (s.type, s.id, srel)
        by_relation = self.reverse.get(rkey)
        resources = by_relation.get((r.type, rel.relation)) if by_relation else None
        if resources is not None and by_relation is not None:
            resources.pop(r.id, None)
            if not resources:
                del by_relation[(r.type, rel.relation)]
                if not by_relation:
                    del self.reverse[rkey]
        for listener in self._listeners:
            listener(rel, False)

    def load(self, store: Store, revision: Revision) -> None:
        """Replace the contents with every live relationship at ``revision``."""
        with self.lock:
            self.forward.clear()
            self.reverse.clear()
            self.size = 0
            self.expiring = 0
            for rel in store.export_relationships(revision):
                self.add(rel)
            self.revision = revision

    def catch_up(self, store: Store) -> bool:
        """Apply the change log up to the store's head; True if a policy changed on the way.

        Revisions without events (a TOUCH that changed nothing) still advance
        the index, to the head read before the log.
        """
        policy_changed = False
        head = store.head_revision()
        if head <= self.revision:
            return False
        while True:
            events = store.changes(self.revision)
            if not events:
                with self.lock:
                    self.revision = max(self.revision, head)
                return policy_changed
            with self.lock:
                for event in events:
                    if event.revision <= self.revision:
                        continue
                    if event.kind is ChangeKind.POLICY:
                        policy_changed = True
                    elif event.relationship is not None:
                        if event.kind is ChangeKind.TOUCH:
                            self.add(event.relationship)
                        else:
                            self.remove(event.relationship)
                self.revision = max(self.revision, events[-1].revision)

    # ---- reading (the GraphReader hot path) ------------------------------------------------

    def edge(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, now: float
    ) -> bool | Edge:
        """The live relationship with exactly this key, or False."""
        by_type = self.forward.get((rtype, rid, relation))
        if by_type is None:
            return False
        inner = by_type.get((stype, srel))
        if inner is None:
            return False
        value = inner.get(sid, False)
        if value is True or value is False:
            return value
        return value if live(value, now) else False

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of every live ``resource#relation@stype:…[#srel]``."""
        by_type = self.forward.get((rtype, rid, relation))
        if by_type is None:
            return []
        inner = by_type.get((stype, srel))
        if not inner:
            return []
        with self.lock:
            items = list(inner.items())
        return [(sid, v) for sid, v in items if v is True or live(v, now)]

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str, now: float
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of every live ``resource#relation@…``."""
        by_type = self.forward.get((rtype, rid, relation))
        if not by_type:
            return []
        with self.lock:
            items = [(k, list(inner.items())) for k, inner in by_type.items()]
        return [
            (stype, sid, srel, v)
            for (stype, srel), pairs in items
            for sid, v in pairs
            if v is True or live(v, now)
        ]

    def resource_edges(
        self, stype: str, sid: str, srel: str, rtype: str, relation: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of every live ``rtype:…#relation@stype:sid[#srel]``."""
        by_relation = self.reverse.get((stype, sid, srel))
        if by_relation is None:
            return []
        inner = by_relation.get((rtype, relation))
        if not inner:
            return []
        with self.lock:
            items = list(inner.items())
        return [(rid, v) for rid, v in items if v is True or live(v, now)]


def relationship_from(
    rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, value: bool | Edge
) -> Relationship:
    """Rebuild the Relationship value a (key, value) pair of the index stands for."""
    subject = SubjectRef(stype, sid, srel or None)
    if value is True or value is False:
        return Relationship(ObjectRef(rtype, rid), relation, subject)
    from datetime import UTC, datetime

    expires = datetime.fromtimestamp(value.expires_at, UTC) if value.expires_at else None
    return Relationship(
        ObjectRef(rtype, rid), relation, subject, value.caveat_name, value.context, expires
    )


class IndexGraph:
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
        self, stype: str, sid: str, srel: str, rtype: str, relation: str
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of each live ``rtype:…#relation@stype:sid[#srel]``."""
        return self.index.resource_edges(stype, sid, srel, rtype, relation, self.now)

    def get(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str
    ) -> Relationship | None:
        """The live relationship with this key."""
        value = self.edge(rtype, rid, relation, stype, sid, srel)
        return (
            None
            if value is False
            else relationship_from(rtype, rid, relation, stype, sid, srel, value)
        )

    def subjects(
        self, rtype: str, rid: str, relation: str, subject_type: str | None
    ) -> list[Relationship]:
        """Every live ``resource#relation@…``, optionally of one subject type."""
        return [
            relationship_from(rtype, rid, relation, stype, sid, srel, v)
            for stype, sid, srel, v in self.all_subject_edges(rtype, rid, relation)
            if subject_type is None or stype == subject_type
        ]

    def subjects_of_many(
        self, rtype: str, resource_ids: Collection[str], relation: str
    ) -> list[Relationship]:
        """Every live relationship on any of the resources."""
        return [r for rid in resource_ids for r in self.subjects(rtype, rid, relation, None)]

    def resources(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Collection[str],
        subject_relation: str | None,
    ) -> list[Relationship]:
        """Every live relationship from these subjects to ``rtype:…#relation``."""
        srel = subject_relation or ""
        return [
            relationship_from(rtype, rid, relation, stype, sid, srel, v)
            for sid in subject_ids
            for rid, v in self.index.resource_edges(stype, sid, srel, rtype, relation, self.now)
        ]

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> set[str]:
        """Ids of ``rtype`` related by ``relation`` to any of the subjects (no objects built)."""
        srel = subject_relation or ""
        index = self.index
        found: set[str] = set()
        if index.expiring:
            now = self.now
            for sid in subject_ids:
                found.update(
                    rid for rid, _ in index.resource_edges(stype, sid, srel, rtype, relation, now)
                )
            return found
        reverse = index.reverse
        with index.lock:
            for sid in subject_ids:
                by_relation = reverse.get((stype, sid, srel))
                if by_relation is not None:
                    inner = by_relation.get((rtype, relation))
                    if inner:
                        found.update(inner)
        return found
