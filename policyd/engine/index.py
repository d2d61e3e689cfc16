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

import bisect
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from policyd.relationship import Relationship, RelationshipKey
from policyd.store.base import ChangeKind, ChangeLog, Revision, SnapshotReader

_intern = sys.intern

SORTED_THRESHOLD = 256
"""Reverse slots this large keep a sorted copy (8 bytes an id) for ordered paging."""


@dataclass(frozen=True, slots=True)
class Edge:
    """The conditions of a relationship: a caveat with its stored context, and/or an expiry."""

    caveat_name: str | None
    context: dict[str, Any]
    expires_at: float | None


Listener: TypeAlias = "Callable[[str, str, str, str, str, str, bool], None]"
"""Called with a relationship's six key parts and True (added) or False (removed)."""


def edge_of(relationship: Relationship) -> bool | Edge:
    """The stored value for a relationship."""
    if relationship.caveat_name is None and relationship.expires_at is None:
        return True
    expires = relationship.expires_at.timestamp() if relationship.expires_at else None
    return Edge(relationship.caveat_name, relationship.caveat_context, expires)


class ImportedRows:
    """The relationships of an import, kept for the index while the import streams to the store.

    The index must not see them before the import commits, and reading them
    back from the change log afterwards is slower (and holds the whole
    revision's events at once). So they wait here, compact: ids grouped by
    shape (resource type, relation, subject type, subject relation) in two
    parallel lists, about 16 bytes a relationship beside the id strings,
    which are interned and become the index's own; only relationships with a
    caveat or an expiry keep a full row. A million imported relationships
    peaked at 1.4 GiB in the server process when they were kept as a list of
    Relationship objects (``policyd bench --sections grpc-writes``, import).
    """

    def __init__(self) -> None:
        self._plain: dict[tuple[str, str, str, str], tuple[list[str], list[str]]] = {}
        self._conditional: list[tuple[str, str, str, str, str, str, Edge]] = []
        self.count = 0

    def add(self, rel: Relationship) -> None:
        """Keep one imported relationship."""
        r, s = rel.resource, rel.subject
        value = edge_of(rel)
        srel = s.relation or ""
        if isinstance(value, Edge):
            self._conditional.append((r.type, r.id, rel.relation, s.type, s.id, srel, value))
        else:
            shape = (r.type, rel.relation, s.type, srel)
            ids = self._plain.get(shape)
            if ids is None:
                ids = self._plain[shape] = ([], [])
            ids[0].append(_intern(r.id))
            ids[1].append(_intern(s.id))
        self.count += 1

    def apply(self, index: RelationshipIndex) -> None:
        """Put every kept relationship into ``index`` (call with its lock held)."""
        put = index.put
        for (rtype, relation, stype, srel), (rids, sids) in self._plain.items():
            for rid, sid in zip(rids, sids, strict=True):
                put(rtype, rid, relation, stype, sid, srel, True)
        for row in self._conditional:
            put(*row)


def _expires(value: bool | Edge) -> bool:
    return isinstance(value, Edge) and value.expires_at is not None


def live(value: bool | Edge, now: float) -> bool:
    """False for a relationship that has expired by ``now``."""
    if not isinstance(value, Edge):
        return value
    return value.expires_at is None or value.expires_at > now


Slot: TypeAlias = "tuple[str, bool | Edge] | dict[str, bool | Edge]"
"""The ids under one key: a (id, value) pair while there is one, a dict once there are more.

Most keys hold one id (a post's author, a user's one group), and a pair costs
a third of a dict (benchmarks/engine_bench.py, peak RSS).
"""

_Table: TypeAlias = dict[
    tuple[str, str, str, str, str], "tuple[str, bool | Edge] | dict[str, bool | Edge]"
]


def _put(
    table: _Table, key: tuple[str, str, str, str, str], member: str, value: bool | Edge
) -> bool | Edge | None:
    """Set ``member``'s value under ``key``; return the value it replaced, if any."""
    slot = table.get(key)
    if slot is None:
        table[key] = (member, value)
        return None
    if isinstance(slot, tuple):
        if slot[0] == member:
            table[key] = (member, value)
            return slot[1]
        table[key] = {slot[0]: slot[1], member: value}
        return None
    previous = slot.get(member)
    slot[member] = value
    return previous


def _pop(table: _Table, key: tuple[str, str, str, str, str], member: str) -> bool | Edge | None:
    """Remove ``member`` under ``key``; return its value, or None if it was not there."""
    slot = table.get(key)
    if slot is None:
        return None
    if isinstance(slot, tuple):
        if slot[0] != member:
            return None
        del table[key]
        return slot[1]
    value = slot.pop(member, None)
    if value is not None and not slot:
        del table[key]
    return value


def _keep_sorted(
    table: _Table,
    ordered: dict[tuple[str, str, str, str, str], list[str]],
    key: tuple[str, str, str, str, str],
    member: str,
) -> None:
    """Keep the sorted copy of a large slot in step with a new id (making it when it grows)."""
    run = ordered.get(key)
    if run is not None:
        bisect.insort(run, member)
        return
    slot = table.get(key)
    if isinstance(slot, dict) and len(slot) >= SORTED_THRESHOLD:
        ordered[key] = sorted(slot)


def _forget_sorted(
    ordered: dict[tuple[str, str, str, str, str], list[str]],
    key: tuple[str, str, str, str, str],
    member: str,
) -> None:
    """Take a removed id out of a sorted copy; drop the copy once its slot is small again."""
    run = ordered.get(key)
    if run is None:
        return
    at = bisect.bisect_left(run, member)
    if at < len(run) and run[at] == member:
        del run[at]
    if len(run) < SORTED_THRESHOLD // 2:
        del ordered[key]


def _items(slot: Slot | None, lock: threading.Lock) -> list[tuple[str, bool | Edge]]:
    """The (id, value) pairs of a slot, copied under the lock when it is a dict."""
    if slot is None:
        return []
    if isinstance(slot, tuple):
        return [slot]
    with lock:
        return list(slot.items())


class RelationshipIndex:
    """All live relationships at ``revision``, in memory, in both directions.

    ``forward[(resource type, id, relation, subject type, subject relation)]``
    and ``reverse[(subject type, id, subject relation, resource type,
    relation)]`` hold Slots of ids; ``kinds[(resource type, relation)]``
    lists the (subject type, subject relation) pairs seen, to enumerate
    every subject of a resource.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.revision: Revision = 0
        self.clock = clock
        self.lock = threading.Lock()
        self.forward: _Table = {}
        self.reverse: _Table = {}
        self.kinds: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.size = 0
        self.expiring = 0
        """How many relationships carry an expiry; while 0, reads skip the time filter."""
        self.sorted_reverse: dict[tuple[str, str, str, str, str], list[str]] = {}
        """Ascending copies of the reverse slots with SORTED_THRESHOLD ids or more, so
        ListObjects can page through large answers without sorting them."""
        self.sorted_forward: dict[tuple[str, str, str, str, str], list[str]] = {}
        """The same for forward slots, so ListSubjects streams a large group's members in
        order from the first without sorting them all."""
        self._loading = False
        self.generation = 0
        """Incremented by every ``load``, so derived indexes know to rebuild."""
        self.epoch = 0
        """A sequence lock for readers on other threads: odd while changes are being applied,
        incremented again when they are all in. A decision that saw the same even epoch
        before and after read one whole revision; otherwise it may have read a mix."""
        self._listeners: list[Listener] = []

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Mark a batch of changes in progress (``epoch`` odd) until it is all applied."""
        self.epoch += 1
        try:
            yield
        finally:
            self.epoch += 1

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(key…, added)`` after each add or remove (for derived indexes)."""
        self._listeners.append(listener)

    # ---- writing (with ``lock`` held) -------------------------------------------------------

    def put(
        self,
        rtype: str,
        rid: str,
        relation: str,
        stype: str,
        sid: str,
        srel: str,
        value: bool | Edge,
    ) -> None:
        """Insert or replace one relationship."""
        rtype, rid, relation = _intern(rtype), _intern(rid), _intern(relation)
        stype, sid, srel = _intern(stype), _intern(sid), _intern(srel)
        fkey = (rtype, rid, relation, stype, srel)
        previous = _put(self.forward, fkey, sid, value)
        if previous is None and not self._loading:
            _keep_sorted(self.forward, self.sorted_forward, fkey, sid)
        rkey = (stype, sid, srel, rtype, relation)
        if _put(self.reverse, rkey, rid, value) is None and not self._loading:
            _keep_sorted(self.reverse, self.sorted_reverse, rkey, rid)
        if previous is None:
            self.size += 1
            kinds = self.kinds.get((rtype, relation))
            if kinds is None:
                self.kinds[(rtype, relation)] = {(stype, srel)}
            elif (stype, srel) not in kinds:
                kinds.add((stype, srel))
        elif _expires(previous):
            self.expiring -= 1
        if _expires(value):
            self.expiring += 1
        for listener in self._listeners:
            listener(rtype, rid, relation, stype, sid, srel, True)

    def drop(self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str) -> None:
        """Delete one relationship if present."""
        fkey = (rtype, rid, relation, stype, srel)
        previous = _pop(self.forward, fkey, sid)
        if previous is None:
            return
        _forget_sorted(self.sorted_forward, fkey, sid)
        rkey = (stype, sid, srel, rtype, relation)
        _pop(self.reverse, rkey, rid)
        _forget_sorted(self.sorted_reverse, rkey, rid)
        self.size -= 1
        if _expires(previous):
            self.expiring -= 1
        for listener in self._listeners:
            listener(rtype, rid, relation, stype, sid, srel, False)

    def add(self, rel: Relationship) -> None:
        """Insert or replace one relationship value."""
        r, s = rel.resource, rel.subject
        self.put(r.type, r.id, rel.relation, s.type, s.id, s.relation or "", edge_of(rel))

    def remove(self, rel: Relationship) -> None:
        """Delete one relationship value if present."""
        r, s = rel.resource, rel.subject
        self.drop(r.type, r.id, rel.relation, s.type, s.id, s.relation or "")

    def load(self, snapshot: SnapshotReader) -> None:
        """Replace the contents with every live relationship of the snapshot, at its revision."""
        with self.lock, self.applying():
            self.forward = {}
            self.reverse = {}
            self.kinds = {}
            self.size = 0
            self.expiring = 0
            self.generation += 1
            self.sorted_reverse = {}
            self.sorted_forward = {}
            self._loading = True
            put = self.put
            for (
                rtype,
                rid,
                relation,
                stype,
                sid,
                srel,
                caveat,
                context,
                expires,
            ) in snapshot.export_rows():
                if caveat is None and expires is None:
                    put(rtype, rid, relation, stype, sid, srel, True)
                else:
                    edge = Edge(
                        caveat,
                        json.loads(context) if context else {},
                        expires / 1_000_000 if expires is not None else None,
                    )
                    put(rtype, rid, relation, stype, sid, srel, edge)
            self._loading = False
            for table, ordered in (
                (self.forward, self.sorted_forward),
                (self.reverse, self.sorted_reverse),
            ):
                for key, slot in table.items():
                    if isinstance(slot, dict) and len(slot) >= SORTED_THRESHOLD:
                        ordered[key] = sorted(slot)
            self.revision = snapshot.revision

    def catch_up(self, log: ChangeLog) -> bool:
        """Apply the change log up to the store's head; True if a policy changed on the way.

        Revisions without events (a TOUCH that changed nothing) still advance
        the index, to the head read before the log.
        """
        policy_changed = False
        head = log.head_revision()
        if head <= self.revision:
            return False
        while True:
            events = log.changes(self.revision)
            if not events:
                with self.lock:
                    self.revision = max(self.revision, head)
                return policy_changed
            with self.lock, self.applying():
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
        slot = self.forward.get((rtype, rid, relation, stype, srel))
        if slot is None:
            return False
        if isinstance(slot, tuple):
            if slot[0] != sid:
                return False
            value = slot[1]
        else:
            value = slot.get(sid, False)
        if value is True or value is False:
            return value
        return value if live(value, now) else False

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of every live ``resource#relation@stype:…[#srel]``."""
        items = _items(self.forward.get((rtype, rid, relation, stype, srel)), self.lock)
        if not self.expiring:
            return items
        return [(sid, v) for sid, v in items if v is True or live(v, now)]

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str, now: float
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of every live ``resource#relation@…``."""
        out: list[tuple[str, str, str, bool | Edge]] = []
        for stype, srel in self.kinds.get((rtype, relation), ()):
            for sid, v in self.subject_edges(rtype, rid, relation, stype, srel, now):
                out.append((stype, sid, srel, v))
        return out

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of every live ``rtype:…#relation@stype:sid[#srel]``."""
        items = _items(self.reverse.get((stype, sid, srel, rtype, relation)), self.lock)
        if not self.expiring:
            return items
        return [(rid, v) for rid, v in items if v is True or live(v, now)]

    def resource_ids(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
        now: float,
    ) -> set[str]:
        """Ids of ``rtype`` related by ``relation`` to any of the subjects (no objects built)."""
        srel = subject_relation or ""
        if self.expiring:
            found: set[str] = set()
            for sid in subject_ids:
                found.update(
                    rid for rid, _ in self.resource_edges(rtype, relation, stype, sid, srel, now)
                )
            return found
        return self._collect(rtype, relation, stype, subject_ids, srel, runs=None)

    def resource_id_runs(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        subject_relation: str | None,
    ) -> tuple[set[str], list[list[str]]]:
        """``resource_ids`` with large slots as ascending runs; only when nothing expires.

        The runs are not copied into the set, so a caller after the first page
        of ids need not sort them all.
        """
        assert not self.expiring, "expiring relationships must be filtered one by one"
        runs: list[list[str]] = []
        small = self._collect(rtype, relation, stype, subject_ids, subject_relation or "", runs)
        return small, runs

    def subject_id_runs(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> tuple[set[str], list[list[str]]]:
        """Subject ids of ``rtype:rid#relation@stype:…[#srel]``: a large slot as a sorted run.

        Only when nothing expires (expired ids must be filtered one by one).
        """
        assert not self.expiring, "expiring relationships must be filtered one by one"
        key = (rtype, rid, relation, stype, srel)
        with self.lock:
            run = self.sorted_forward.get(key)
            if run is not None:
                return set(), [run.copy()]
            slot = self.forward.get(key)
            if slot is None:
                return set(), []
            if isinstance(slot, tuple):
                return {slot[0]}, []
            return set(slot), []

    def _collect(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        srel: str,
        runs: list[list[str]] | None,
    ) -> set[str]:
        """The resource ids under each subject's reverse slot; sorted slots go to ``runs``."""
        found: set[str] = set()
        reverse, ordered = self.reverse, self.sorted_reverse
        with self.lock:
            for sid in subject_ids:
                rkey = (stype, sid, srel, rtype, relation)
                if runs is not None:
                    run = ordered.get(rkey)
                    if run is not None:
                        runs.append(run.copy())
                        continue
                slot = reverse.get(rkey)
                if slot is None:
                    continue
                if isinstance(slot, tuple):
                    found.add(slot[0])
                else:
                    found.update(slot)
        return found


def relationship_of(key: RelationshipKey, value: bool | Edge) -> Relationship:
    """The Relationship a (key, value) pair of the index stands for; the inverse of ``edge_of``."""
    if not isinstance(value, Edge):
        return Relationship.from_key(key)
    expires = None if value.expires_at is None else datetime.fromtimestamp(value.expires_at, UTC)
    return Relationship.from_key(key, value.caveat_name, value.context, expires)
