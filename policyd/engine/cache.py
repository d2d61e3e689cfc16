"""Package cache remembers recent decisions so repeated checks cost a dict lookup.

Entries are keyed by the index revision they were computed at, so a write,
which moves the revision on, makes every older entry unreachable at once:
nothing stale can be served, and no invalidation bookkeeping is needed on the
write path. Time changes answers too, when a relationship the decision relied
on expires: each entry keeps the earliest such expiry and is not served after
it. Old entries age out first-in, first-out when the cache is full. Only
checks without caveat context are cached (their answer depends on the
relationships alone). Hit and miss counts are plain ints for a metrics
collector to export.
"""

from __future__ import annotations

import math
import threading
from typing import TypeAlias

from policyd.engine.results import Partial
from policyd.relationship import ObjectRef, SubjectRef

DecisionKey: TypeAlias = tuple[int, str, str, str, str, str, str]
"""(revision, resource type and id, permission, subject type, id and relation)."""


def decision_key(
    revision: int, resource: ObjectRef, permission: str, subject: SubjectRef
) -> DecisionKey:
    """The key of one decision without caveat context at one index revision."""
    return (
        revision,
        resource.type,
        resource.id,
        permission,
        subject.type,
        subject.id,
        subject.relation or "",
    )


DEFAULT_CAPACITY = 100_000


class DecisionCache:
    """A bounded map from a decision's key to its answer."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: dict[DecisionKey, tuple[Partial, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: DecisionKey, now: float) -> Partial | None:
        """The cached answer if still valid at ``now``, or None (counted as a miss)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, key: DecisionKey, value: Partial, valid_until: float = math.inf) -> None:
        """Remember an answer until ``valid_until``, dropping the oldest entries when full."""
        if self.capacity <= 0:
            return
        entries = self._entries
        if len(entries) >= self.capacity:
            with self._lock:
                excess = len(entries) - self.capacity + max(1, self.capacity // 10)
                for old in list(entries)[:excess]:
                    entries.pop(old, None)
        entries[key] = (value, valid_until)

    def resize(self, capacity: int) -> None:
        """Change the bound; 0 turns the cache off. Drops every entry."""
        with self._lock:
            self.capacity = capacity
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups so far (0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
