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
from typing import Protocol, TypeAlias

from policyd.engine.index import RelationshipIndex

_EMPTY: frozenset[str] = frozenset()

ClosureListener: TypeAlias = "Callable[[str, str, list[str]], None]"
"""Told (type, relation, objects) when those objects' ancestors in a closure changed."""


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

    def add(self, container: str, member: str) -> list[str]:
        """``container`` now contains ``member``: everything below gains its ancestors.

        Returns the objects whose ancestors changed (``member`` and all below it).
        """
        if container in self.parents.get(member, ()):
            return []
        self.parents.setdefault(member, set()).add(container)
        self.children.setdefault(container, set()).add(member)
        gained = self.ancestors.get(container, _EMPTY) | {container}
        below = self._below(member)
        for node in below:
            self.ancestors[node] = self.ancestors.get(node, _EMPTY) | gained
        return below

    def remove(self, container: str, member: str) -> list[str]:
        """``container`` no longer contains ``member``: recompute everything below exactly.

        Returns the objects whose ancestors may have changed (``member`` and all below it).
        """
        parents = self.parents.get(member)
        if parents is None or container not in parents:
            return []
        parents.discard(container)
        if not parents:
            del self.parents[member]
        siblings = self.children.get(container)
        if siblings is not None:
            siblings.discard(member)
            if not siblings:
                del self.children[container]
        below = self._below(member)
        for node in below:
            ancestors = self._walk_up(node)
            if ancestors:
                self.ancestors[node] = ancestors
            else:
                self.ancestors.pop(node, None)
        return below

    def contains(self, container: str, member: str) -> bool:
        """True when ``member`` is nested, at any depth, in ``container``."""
        return container in self.ancestors.get(member, _EMPTY)


class Closures:
    """The group closures of one relationship index, kept current as the index changes."""

    def __init__(self, index: RelationshipIndex) -> None:
        self._index = index
        self._closures: dict[tuple[str, str], GroupClosure] = {}
        self._generation = index.generation
        self._listeners: list[ClosureListener] = []
        index.on_change(self._changed)

    def on_change(self, listener: ClosureListener) -> None:
        """Call ``listener(type, relation, objects)`` with the objects whose ancestors changed."""
        self._listeners.append(listener)

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
        moved = closure.add(rid, sid) if added else closure.remove(rid, sid)
        if moved:
            for listener in self._listeners:
                listener(rtype, relation, moved)


CLOSURE_READ = "^"
"""Marks a decision cache read key ``(type, relation, object, CLOSURE_READ)``: the decision
asked for that object's ancestors in the group closure of ``type#relation``."""


class Membership(Protocol):
    """What plans ask a group closure."""

    def contains(self, container: str, member: str) -> bool:
        """True when ``member`` is nested, at any depth, in ``container``."""
        ...


class ClosureSource(Protocol):
    """Where plans get group closures from (``Closures``, or one that notes each use)."""

    def get(self, type_name: str, relation: str) -> Membership:
        """The closure of ``type_name#relation``."""
        ...


class RecordingClosures:
    """Closures that note whose ancestors each decision asked for, for the decision cache."""

    def __init__(self, closures: Closures, note: Callable[[tuple[str, ...]], None]) -> None:
        self._closures = closures
        self._note = note

    def get(self, type_name: str, relation: str) -> Membership:
        """The closure of ``type_name#relation``, noting each object asked about."""
        return _NotedClosure(self._closures.get(type_name, relation), self._note)


class _NotedClosure:
    __slots__ = ("_closure", "_note")

    def __init__(self, closure: GroupClosure, note: Callable[[tuple[str, ...]], None]) -> None:
        self._closure = closure
        self._note = note

    def contains(self, container: str, member: str) -> bool:
        closure = self._closure
        self._note((closure.type_name, closure.relation, member, CLOSURE_READ))
        return closure.contains(container, member)
