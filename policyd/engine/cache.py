"""Package cache remembers recent decisions, and forgets exactly those a write can change.

Keying entries by revision made every write end every entry (hit ratio 0.996
→ 0.025 at 10% writes, measured). Instead each entry records what its
decision read from the in-memory index (``Dependencies``): the forward keys
``(resource type, id, relation)``, the reverse keys ``(subject type, id,
relation, resource type, relation)``, and the objects whose ancestors it
asked a group closure for. When the index applies a change, the entries that
read any key the changed relationship lives under are dropped, and only
those; a nesting edge also drops the entries that asked for the ancestors of
an object below it (group_closure.py tells which). Keyed by whole closures,
a few nesting writes emptied the cache (hit ratio 0.65 at 10% writes on the
groups workload, measured). An entry that survives
is the answer at the index's current revision, so a hit is served at that
revision and its consistency token means exactly what a computed answer's
would. (Zanzibar and SpiceDB quantize revisions instead, serving
minimize_latency reads at a revision up to a few seconds old; tracking what
was read keeps every answer fresh.)

Time changes answers too, when a relationship the decision relied on
expires: each entry keeps the earliest such expiry and is not served after
it. A policy change or an index reload clears everything. Only checks
without caveat context are cached (their answer depends on the relationships
alone). A decision computed while the index changed is not stored, since it
may have read both sides of the change.

The dependencies of one ``CheckRun`` are shared by the decisions it makes
(a BatchCheck's checks of one subject share a run and its memo, so a later
decision may lean on what an earlier one read); invalidating one of them
drops every decision of that run, which over-invalidates a little and never
under-invalidates. Old entries age out first-in, first-out when the cache is
full. Only a decision asked before is stored (``admit``). Hit and miss counts
are plain ints for a metrics collector to export.
"""

from __future__ import annotations

import threading
from typing import TypeAlias

from policyd.engine.group_closure import CLOSURE_READ
from policyd.engine.results import Partial
from policyd.relationship import ObjectRef, SubjectRef

DecisionKey: TypeAlias = tuple[str, str, str, str, str, str]
"""(resource type and id, permission, subject type, id and relation)."""

ReadKey: TypeAlias = tuple[str, ...]
"""What a decision read: a forward key (3 parts), a reverse key (5), or an object's
ancestors in a group closure (4, ending in CLOSURE_READ)."""

DEFAULT_CAPACITY = 100_000


def decision_key(resource: ObjectRef, permission: str, subject: SubjectRef) -> DecisionKey:
    """The key of one decision without caveat context."""
    return (
        resource.type,
        resource.id,
        permission,
        subject.type,
        subject.id,
        subject.relation or "",
    )


class Dependencies:
    """What the decisions of one run read, and the decisions cached from it."""

    __slots__ = ("decisions", "read", "registered", "seen")

    def __init__(self) -> None:
        self.read: list[ReadKey] = []
        self.seen: set[ReadKey] = set()
        self.decisions: list[DecisionKey] = []
        self.registered = 0
        """How many of ``read`` the cache has indexed so far."""

    def add(self, key: ReadKey) -> None:
        """Note one read (repeats are ignored)."""
        if key not in self.seen:
            self.seen.add(key)
            self.read.append(key)


class DecisionCache:
    """A bounded map from a decision's key to its answer, invalidated by what changes."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self.invalidated = 0
        """Entries dropped because a relationship they read changed."""
        self.serial = 0
        """Bumped by every invalidation; a decision computed across a bump is not stored."""
        self._entries: dict[DecisionKey, tuple[Partial, float, Dependencies]] = {}
        self._readers: dict[ReadKey, list[Dependencies]] = {}
        self._lock = threading.Lock()
        self._asked: set[int] = set()
        """Hashes of decisions asked once and not stored (``admit``)."""

    def get(self, key: DecisionKey, now: float) -> Partial | None:
        """The cached answer if still valid at ``now``, or None (counted as a miss)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def admit(self, key: DecisionKey) -> bool:
        """Whether a decision missed now should be stored: only one asked before.

        Storing costs a decision noting every read and the cache indexing
        them; a decision asked once and never again (distinct traffic) pays
        it for nothing: distinct BatchCheck(100) ran at 60% of its cache-off
        rate with the cache on, measured. So the first miss of a key only
        notes its hash here, and the second is stored (TinyLFU's doorkeeper,
        as a plain set). Bounded at twice the capacity, then started over; a
        hash collision only stores a decision early.
        """
        asked = self._asked
        marker = hash(key)
        if marker in asked:  # kept: after a write ends the entry, its next miss stores again
            return True
        if len(asked) >= 2 * self.capacity:
            asked.clear()
        asked.add(marker)
        return False

    def put(
        self,
        key: DecisionKey,
        value: Partial,
        valid_until: float,
        dependencies: Dependencies,
        serial: int,
    ) -> None:
        """Remember an answer computed from ``dependencies`` since ``serial`` was read.

        Nothing is stored when the cache was invalidated meanwhile (the answer
        may mix the index before and after a change) or is off.
        """
        if self.capacity <= 0:
            return
        with self._lock:
            if serial != self.serial:
                return
            entries = self._entries
            if len(entries) >= self.capacity:
                self._evict(len(entries) - self.capacity + max(1, self.capacity // 10))
            entries[key] = (value, valid_until, dependencies)
            dependencies.decisions.append(key)
            readers = self._readers
            for read in dependencies.read[dependencies.registered :]:
                holders = readers.get(read)
                if holders is None:
                    readers[read] = [dependencies]
                else:
                    holders.append(dependencies)
            dependencies.registered = len(dependencies.read)

    def changed(self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str) -> None:
        """A relationship was added or removed: drop every decision that read where it lives."""
        self._drop([(rtype, rid, relation), (stype, sid, srel, rtype, relation)])

    def closure_changed(self, type_name: str, relation: str, objects: list[str]) -> None:
        """A nesting edge moved these objects' ancestors: drop decisions that asked for them."""
        self._drop([(type_name, relation, member, CLOSURE_READ) for member in objects])

    def _drop(self, keys: list[ReadKey]) -> None:
        """Drop every decision that read one of ``keys``."""
        with self._lock:
            self.serial += 1
            entries = self._entries
            for read in keys:
                for dependencies in self._readers.pop(read, ()):
                    for key in dependencies.decisions:
                        entry = entries.get(key)
                        if entry is not None and entry[2] is dependencies:
                            del entries[key]
                            self.invalidated += 1

    def clear(self) -> None:
        """Forget everything (a new policy, a reloaded index)."""
        with self._lock:
            self.serial += 1
            self._entries.clear()
            self._readers.clear()
            self._asked.clear()

    def resize(self, capacity: int) -> None:
        """Change the bound; 0 turns the cache off. Drops every entry."""
        with self._lock:
            self.capacity = capacity
        self.clear()

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest entries; rebuild the read index when it outgrows them."""
        entries = self._entries
        for old in list(entries)[:count]:
            entries.pop(old, None)
        if len(self._readers) > 4 * max(len(entries), 1024):
            live = {id(d): d for _, _, d in entries.values()}
            readers: dict[ReadKey, list[Dependencies]] = {}
            for dependencies in live.values():
                dependencies.decisions = [k for k in dependencies.decisions if k in entries]
                for read in dependencies.read[: dependencies.registered]:
                    readers.setdefault(read, []).append(dependencies)
            self._readers = readers

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups so far (0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
