"""Package group_closure keeps the closure of nested groups, so deep membership is one set lookup.

Zanzibar's Leopard index answers "is S in group G, however deeply nested" by
precomputing, for every group, the set of groups that contain it. Here a
``GroupClosure`` does that for one self-recursive relation such as
``group#member: user | group#member``: for each object it keeps every object
that contains it through userset relationships ``T:x#R@T:y#R``. A check then
reads the subject's direct memberships from the reverse index and asks
whether the resource is one of them or among their ancestors.

The engine builds the closures of every self-recursive relation when it
compiles a policy (engine.py, not inside the first request that needs one:
building scans the whole index), from the relationship index; ``Closures.get``
builds any other on first use. They are then kept exact on every add and
remove: an added edge extends the ancestors of everything
below it; a removed edge recomputes them for everything below it from their
remaining parents, so a member reachable by two paths stays a member when one
path goes. Ancestor sets are immutable and replaced whole, so readers never
see one half-updated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from policyd.engine.index import RelationshipIndex

_EMPTY: frozenset[str] = frozenset()


class GroupClosure:
    """Ancestors of every object of ``type_name`` through ``type_name#relation`` usersets."""

    def __init__(self, type_name: str, relation: str) -> None:
        self.type_name = type_name
        self.relation = relation
        self.parents: dict[str, set[str]] = {}
        self.children: dict[str, set[str]] = {}
        self.ancestors: dict[str, frozenset[str]] = {}

    def build(self, edges: Iterable[tuple[str, str]]) -> None:
        """Start from (container, member) pairs: ``type:container#rel@type:member#rel``."""
        for container, member in edges:
            self.parents.setdefault(member, set()).add(container)
            self.children.setdefault(container, set()).add(member)
        for member in list(self.parents):
            self.ancestors[member] = self._walk_up(member)

    def _walk_up(self, start: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self.parents.get(start, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self.parents.get(node, ()))
        return frozenset(seen)

    def _below(self, start: str) -> list[str]:
        """``start`` and everything it contains, transitively."""
        seen = {start}
        order = [start]
        stack = [start]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    order.append(child)
                    stack.append(child)
        return order

    def add(self, container: str, member: str) -> None:
        """``container`` now contains ``member``: everything below gains its ancestors."""
        if container in self.parents.get(member, ()):
            return
        self.parents.setdefault(member, set()).add(container)
        self.children.setdefault(container, set()).add(member)
        gained = self.ancestors.get(container, _EMPTY) | {container}
        for node in self._below(member):
            self.ancestors[node] = self.ancestors.get(node, _EMPTY) | gained

    def remove(self, container: str, member: str) -> None:
        """``container`` no longer contains ``member``: recompute everything below exactly."""
        parents = self.parents.get(member)
        if parents is None or container not in parents:
            return
        parents.discard(container)
        if not parents:
            del self.parents[member]
        siblings = self.children.get(container)
        if siblings is not None:
            siblings.discard(member)
            if not siblings:
                del self.children[container]
        for node in self._below(member):
            ancestors = self._walk_up(node)
            if ancestors:
                self.ancestors[node] = ancestors
            else:
                self.ancestors.pop(node, None)

    def contains(self, container: str, member: str) -> bool:
        """True when ``member`` is nested, at any depth, in ``container``."""
        return container in self.ancestors.get(member, _EMPTY)


class Closures:
    """The group closures of one relationship index, kept current as the index changes."""

    def __init__(self, index: RelationshipIndex) -> None:
        self._index = index
        self._closures: dict[tuple[str, str], GroupClosure] = {}
        self._generation = index.generation
        index.on_change(self._changed)

    def get(self, type_name: str, relation: str) -> GroupClosure:
        """The closure of ``type_name#relation``, built from the index if new."""
        key = (type_name, relation)
        if self._generation != self._index.generation:
            with self._index.lock:
                self._closures.clear()
                self._generation = self._index.generation
        closure = self._closures.get(key)
        if closure is not None:
            return closure
        with self._index.lock:
            closure = self._closures.get(key)
            if closure is None:
                closure = GroupClosure(type_name, relation)
                closure.build(self._userset_edges(type_name, relation))
                self._closures[key] = closure
        return closure

    def _userset_edges(self, type_name: str, relation: str) -> list[tuple[str, str]]:
        edges: list[tuple[str, str]] = []
        for (rtype, rid, rel, stype, srel), slot in self._index.forward.items():
            if rtype == type_name and rel == relation and stype == type_name and srel == relation:
                members = [slot[0]] if isinstance(slot, tuple) else list(slot)
                edges.extend((rid, member) for member in members)
        return edges

    def _changed(
        self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, added: bool
    ) -> None:
        """Keep closures exact as the index changes (called with the index lock held)."""
        if stype != rtype or srel != relation:
            return
        if self._generation != self._index.generation:
            self._closures.clear()
            self._generation = self._index.generation
            return
        closure = self._closures.get((rtype, relation))
        if closure is None:
            return
        if added:
            closure.add(rid, sid)
        else:
            closure.remove(rid, sid)


class ClosureSource(Protocol):
    """Where plans get group closures from (``Closures``, or one that notes each use)."""

    def get(self, type_name: str, relation: str) -> GroupClosure:
        """The closure of ``type_name#relation``."""
        ...


class RecordingClosures:
    """Closures that note each ``(type, relation)`` used, for the decision cache."""

    def __init__(self, closures: Closures, note: Callable[[tuple[str, ...]], None]) -> None:
        self._closures = closures
        self._note = note

    def get(self, type_name: str, relation: str) -> GroupClosure:
        """The closure of ``type_name#relation``; noted."""
        self._note((type_name, relation))
        return self._closures.get(type_name, relation)
