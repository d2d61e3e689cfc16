"""Package index keeps live relationships in memory, both directions, following the change log.

Check is called on every read of every permissioned record, and a SQL query
per step of a graph walk costs more than the whole decision budget. So each
process loads the relationships once (an export at one revision, or an index
snapshot file: engine/snapshot.py) and then applies the store's change log,
and the evaluators read arrays and dicts instead of tables.

Layout, chosen to make a relationship cost tens of bytes, not hundreds
(dicts of 5-tuple keys and per-key slots of string ids took 328 bytes of RSS
per relationship at 10M on the groups workload, 106 s to load):

- ``Names`` numbers the ids of one object type. Ids present at the last build
  get the numbers 0..n-1 in string order, so ascending numbers are ascending
  ids; ids first seen later get the next numbers. A type with many ids keeps
  them in a MARISA trie (``marisa-trie``: about 3 bytes an id for document-like
  ids, against about 120 for a str in a dict) with two arrays between the
  trie's key ids and the string-order numbers; a small type keeps a dict and a
  list, which are faster to read.
- ``Adjacency`` holds one direction of one ``Kind`` (resource type, relation,
  subject type, subject relation) as compressed sparse rows: ``starts[k]`` ..
  ``starts[k + 1]`` delimit key ``k``'s targets in one ``array('I')``, sorted,
  4 bytes a relationship per direction. Large id sets are just long runs of
  that array, already in id order. Measured against pyroaring bitmaps and
  Python sets (benchmarks/index_bench.py, RSS per id, each in a fresh
  process): for a million keys of one or two ids (the common shape: a
  document's owner, a post's author) arrays took 6.8 bytes an id, bitmaps
  155 and sets 157, since every bitmap is a Python object; for a thousand
  keys of a thousand ids arrays 4.0, bitmaps 3.7; for one key of a million
  ids out of ten million arrays 4.1, bitmaps 1.7. Bitmaps answered
  membership 2-3x faster on large rows, but a large row is bisected only for
  a direct relationship, and the memory of the common shape decides.
- Changes since the build go to small dicts beside the arrays (``added`` and
  ``removed``), so a write never moves an array; a rebuild (a load, or a
  snapshot written and read back) folds them in.
- Caveats and expiries are rare: ``Kind.values`` maps the few (resource,
  subject) numbers that carry one to an ``Edge``; every other relationship is
  unconditional, and its value ``True`` is implied.

Readers never iterate a dict that a writer is changing: iteration copies
under the lock, and writers change dicts only under it. Point lookups need no
lock; arrays built are never changed. Expired relationships stay until the
store's change log or a reload drops them, and every read filters them out by
time.

It runs past 500 lines because the interned names, the adjacency rows and the
index that owns them share one lock and one invariant (arrays built are never
changed), which reads best in one place.
"""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias, overload

import marisa_trie

from policyd.relationship import Relationship, RelationshipKey
from policyd.store.base import ChangeKind, ChangeLog, ExportRow, Revision, SnapshotReader

_intern = sys.intern

SORTED_THRESHOLD = 256
"""Keys with this many targets or more are handed to lookups as ascending runs, unsorted."""

COMPACT_NAMES = 1 << 16
"""Types with this many ids or more at a build keep them in a trie (3 bytes an id, not
120); smaller ones in a dict, which is read in a quarter of the instructions."""

COMPACT_AT = 0.25
"""Changes since the build beyond this share of the relationships are folded into rebuilt
arrays (the changes cost set and dict entries, the rebuilt rows 8 bytes)."""

COMPACT_MIN_CHANGES = 100_000
"""Fewer changes than this are never worth a rebuild while serving."""

KindKey: TypeAlias = tuple[str, str, str, str]
"""(resource type, relation, subject type, subject relation or '')."""

_NUMBER = "I"
"""Array type code of id numbers and offsets: 4 bytes, up to 4 billion per type and kind."""


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

    def apply(self, index: RelationshipIndex, revision: Revision) -> None:
        """Put every kept relationship into ``index``, which is then at ``revision``.

        An import large beside the index (``COMPACT_AT``) goes straight into
        rebuilt arrays (``RelationshipIndex.extend``): put one by one, its rows
        would sit in the change overlay at several hundred bytes each (a
        million imported into an empty server kept 660 MiB, measured).
        """
        if self.count > COMPACT_AT * index.size:
            index.extend(self.rows(), revision)
            return
        put = index.put
        with index.lock, index.applying():
            for (rtype, relation, stype, srel), (rids, sids) in self._plain.items():
                for rid, sid in zip(rids, sids, strict=True):
                    put(rtype, rid, relation, stype, sid, srel, True)
            for row in self._conditional:
                put(*row)
            index.revision = revision

    def rows(self) -> Iterator[ExportRow]:
        """Every kept relationship as an export row."""
        for (rtype, relation, stype, srel), (rids, sids) in self._plain.items():
            for rid, sid in zip(rids, sids, strict=True):
                yield rtype, rid, relation, stype, sid, srel, None, None, None
        for rtype, rid, relation, stype, sid, srel, value in self._conditional:
            yield export_row(rtype, rid, relation, stype, sid, srel, value)


def export_row(
    rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str, value: Edge
) -> ExportRow:
    """The export row of a relationship whose value carries a caveat or an expiry."""
    return (
        rtype,
        rid,
        relation,
        stype,
        sid,
        srel,
        value.caveat_name,
        json.dumps(value.context) if value.context else None,
        None if value.expires_at is None else round(value.expires_at * 1_000_000),
    )


def edge_of_row(caveat: str | None, context: str | None, expires: int | None) -> bool | Edge:
    """The stored value for an export row's caveat, JSON context and expiry (µs)."""
    if caveat is None and expires is None:
        return True
    return Edge(
        caveat,
        json.loads(context) if context else {},
        expires / 1_000_000 if expires is not None else None,
    )


def _expires(value: bool | Edge) -> bool:
    return isinstance(value, Edge) and value.expires_at is not None


def live(value: bool | Edge, now: float) -> bool:
    """False for a relationship that has expired by ``now``."""
    if not isinstance(value, Edge):
        return value
    return value.expires_at is None or value.expires_at > now


def numbers(values: Iterable[int] = ()) -> array[int]:
    """An array of id numbers."""
    return array(_NUMBER, values)


class Names:
    """The ids of one object type as numbers, both ways.

    The ``base`` ids of the last build are numbered in string order; later ids
    follow in the order they came. Numbers are never reused until a rebuild.
    """

    __slots__ = ("_ids", "_kid_of", "_names", "_rank_of", "_trie", "base")

    def __init__(
        self,
        ordered: list[str] | None = None,
        trie: marisa_trie.Trie | None = None,
        kid_of: array[int] | None = None,
    ) -> None:
        """Ids in string order as a list, or as a trie with each rank's trie key id."""
        self._trie = trie
        if trie is not None:
            assert kid_of is not None
            self._kid_of = kid_of
            self._rank_of = numbers(bytes(4 * len(kid_of)))
            rank_of = self._rank_of
            for rank, kid in enumerate(kid_of):
                rank_of[kid] = rank
            self.base = len(kid_of)
            self._names: list[str] = []
            self._ids: dict[str, int] = {}
        else:
            self._kid_of = self._rank_of = numbers()
            self._names = list(ordered or ())  # its own: later ids are appended
            self.base = len(self._names)
            self._ids = {name: number for number, name in enumerate(self._names)}

    @classmethod
    def of(cls, ordered: list[str]) -> Names:
        """Names for ids in string order, compact when there are many."""
        if len(ordered) < COMPACT_NAMES:
            return cls(ordered)
        trie = marisa_trie.Trie(ordered)
        return cls(trie=trie, kid_of=numbers(map(trie.__getitem__, ordered)))

    @property
    def compact(self) -> bool:
        """Whether the base ids are in a trie."""
        return self._trie is not None

    def __len__(self) -> int:
        return self.base + len(self._ids) if self._trie is not None else len(self._names)

    def number(self, name: str) -> int:
        """The number of ``name``, or -1 if it was never seen."""
        found = self._ids.get(name)
        if found is not None:
            return found
        trie = self._trie
        if trie is not None:
            kid: int | None = trie.get(name)
            if kid is not None:
                return self._rank_of[kid]
        return -1

    def intern(self, name: str) -> int:
        """The number of ``name``, given the next free one if it is new (lock held)."""
        found = self.number(name)
        if found >= 0:
            return found
        found = len(self)
        self._names.append(name)
        self._ids[name] = found
        return found

    def name(self, number: int) -> str:
        """The id numbered ``number``."""
        trie = self._trie
        if trie is None:
            return self._names[number]
        if number >= self.base:
            return self._names[number - self.base]
        restored: str = trie.restore_key(self._kid_of[number])
        return restored

    def later(self) -> list[str]:
        """The ids first seen after the build (numbered from ``base`` on)."""
        return self._names[self.base :] if self._trie is None else list(self._names)

    def base_ids(self) -> list[str]:
        """The ids of the build, in string order."""
        if self._trie is None:
            return self._names[: self.base]
        restore = self._trie.restore_key
        return [restore(kid) for kid in self._kid_of]

    # ---- snapshot form ------------------------------------------------------------------------

    def parts(self) -> tuple[bytes, bytes, list[str]]:
        """(trie bytes or the ids joined by newlines, key ids of the ranks, later ids)."""
        if self._trie is None:
            return "\n".join(self._names[: self.base]).encode(), b"", self.later()
        return self._trie.tobytes(), self._kid_of.tobytes(), self.later()

    @classmethod
    def from_parts(cls, compact: bool, ids: bytes, kids: bytes, later: list[str]) -> Names:
        """The inverse of ``parts``."""
        if compact:
            trie = marisa_trie.Trie()
            trie.frombytes(ids)
            kid_of = numbers()
            kid_of.frombytes(kids)
            names = cls(trie=trie, kid_of=kid_of)
        else:
            names = cls(ids.decode().split("\n") if ids else [])
        for name in later:
            names.intern(name)
        return names


class IdRun(Sequence[str]):
    """Ascending ids of one large key, read lazily from its array (a ``Sequence[str]``).

    Indexing and ``len`` count the ids removed since the build (``bisect``
    only needs positions); iteration skips them.
    """

    __slots__ = ("_hi", "_lo", "_names", "_removed", "_targets")

    def __init__(
        self, names: Names, targets: array[int], lo: int, hi: int, removed: frozenset[int]
    ) -> None:
        self._names, self._targets, self._lo, self._hi = names, targets, lo, hi
        self._removed = removed

    def __len__(self) -> int:
        return self._hi - self._lo

    @overload
    def __getitem__(self, at: int) -> str: ...

    @overload
    def __getitem__(self, at: slice) -> IdRun: ...

    def __getitem__(self, at: int | slice) -> str | IdRun:
        if isinstance(at, slice):
            lo, hi, step = at.indices(self._hi - self._lo)
            assert step == 1, "runs are sliced, not strided"
            return IdRun(self._names, self._targets, self._lo + lo, self._lo + hi, self._removed)
        if not 0 <= at < self._hi - self._lo:
            raise IndexError(at)
        return self._names.name(self._targets[self._lo + at])

    def __iter__(self) -> Iterator[str]:
        name, removed = self._names.name, self._removed
        for number in self._targets[self._lo : self._hi]:
            if number not in removed:
                yield name(number)


class Adjacency:
    """One direction of a kind: key number -> sorted target numbers, and changes since."""

    __slots__ = ("added", "removed", "size", "starts", "targets")

    def __init__(self, starts: array[int] | None = None, targets: array[int] | None = None):
        self.starts = starts if starts is not None else numbers((0,))
        self.targets = targets if targets is not None else numbers()
        self.size = len(self.starts) - 1
        """Keys below this have a row in the arrays."""
        self.added: dict[int, set[int]] = {}
        self.removed: dict[int, set[int]] = {}

    @classmethod
    def of(cls, keys: array[int], targets: array[int], size: int) -> Adjacency:
        """Rows for ``size`` keys from parallel arrays of (key, target) pairs, in any order."""
        pairs = list(map(operator.or_, map(operator.lshift, keys, itertools.repeat(32)), targets))
        pairs.sort()
        counts = Counter(map(operator.rshift, pairs, itertools.repeat(32)))
        per_key = map(counts.get, range(size), itertools.repeat(0))
        starts = numbers(itertools.accumulate(per_key, initial=0))
        return cls(starts, numbers(map(operator.and_, pairs, itertools.repeat(0xFFFFFFFF))))

    def _in_rows(self, key: int, target: int) -> bool:
        """Whether (key, target) is in the arrays (removed or not)."""
        if key >= self.size:
            return False
        starts, targets = self.starts, self.targets
        lo, hi = starts[key], starts[key + 1]
        at = bisect.bisect_left(targets, target, lo, hi)
        return at < hi and targets[at] == target

    def has(self, key: int, target: int) -> bool:
        """Whether (key, target) is present now."""
        if key < self.size:
            starts = self.starts
            lo, hi = starts[key], starts[key + 1]
            if lo != hi:
                targets = self.targets
                at = bisect.bisect_left(targets, target, lo, hi)
                if at < hi and targets[at] == target:
                    removed = self.removed
                    return not removed or target not in removed.get(key, ())
        added = self.added.get(key)
        return added is not None and target in added

    def add(self, key: int, target: int) -> bool:
        """Add (key, target); False if it was present (lock held)."""
        if self._in_rows(key, target):
            gone = self.removed.get(key)
            if gone is None or target not in gone:
                return False
            gone.discard(target)
            if not gone:
                del self.removed[key]
            return True
        added = self.added.get(key)
        if added is None:
            self.added[key] = {target}
            return True
        if target in added:
            return False
        added.add(target)
        return True

    def discard(self, key: int, target: int) -> bool:
        """Remove (key, target); False if it was absent (lock held)."""
        added = self.added.get(key)
        if added is not None and target in added:
            added.discard(target)
            if not added:
                del self.added[key]
            return True
        if not self._in_rows(key, target):
            return False
        gone = self.removed.setdefault(key, set())
        if target in gone:
            return False
        gone.add(target)
        return True

    def members(self, key: int, lock: threading.Lock) -> list[int]:
        """Every target of ``key`` now (the changes copied under the lock)."""
        out: list[int] = []
        if key < self.size:
            starts = self.starts
            lo, hi = starts[key], starts[key + 1]
            if lo != hi:
                out = self.targets[lo:hi].tolist()
                if self.removed:
                    with lock:
                        gone = self.removed.get(key)
                        if gone:
                            out = [t for t in out if t not in gone]
        added = self.added.get(key)
        if added:
            with lock:
                out.extend(added)
        return out

    def split(self, key: int, names: Names, lock: threading.Lock, small: set[str]) -> IdRun | None:
        """A large row of ``key`` as an ascending run, or None.

        Ids not in the run (added since the build, or all of a small row) go to ``small``.
        """
        if key < self.size:
            starts = self.starts
            lo, hi = starts[key], starts[key + 1]
            if hi - lo >= SORTED_THRESHOLD:
                with lock:
                    gone = frozenset(self.removed.get(key, ()))
                    added = list(self.added.get(key, ()))
                small.update(map(names.name, added))
                return IdRun(names, self.targets, lo, hi, gone)
        small.update(map(names.name, self.members(key, lock)))
        return None

    def pairs(self) -> Iterator[tuple[int, int]]:
        """Every (key, target) present now (call with the lock held)."""
        starts, targets, removed = self.starts, self.targets, self.removed
        for key in range(self.size):
            gone = removed.get(key, ())
            for target in targets[starts[key] : starts[key + 1]]:
                if target not in gone:
                    yield key, target
        for key, added in self.added.items():
            for target in added:
                yield key, target

    def changes(self) -> int:
        """How many pairs were added or removed since the build."""
        return sum(map(len, self.added.values())) + sum(map(len, self.removed.values()))


class Kind:
    """The relationships ``resource_type:…#relation@subject_type:…[#subject_relation]``."""

    __slots__ = ("forward", "key", "resources", "reverse", "subjects", "values")

    def __init__(
        self,
        key: KindKey,
        resources: Names,
        subjects: Names,
        forward: Adjacency | None = None,
        reverse: Adjacency | None = None,
    ) -> None:
        self.key = key
        self.resources = resources
        self.subjects = subjects
        self.forward = forward or Adjacency()
        """Resource number -> subject numbers."""
        self.reverse = reverse or Adjacency()
        """Subject number -> resource numbers."""
        self.values: dict[tuple[int, int], Edge] = {}
        """(resource, subject) numbers -> the caveat and/or expiry; absent means unconditional."""


class RelationshipIndex:
    """All live relationships at ``revision``, in memory, in both directions.

    ``kinds[(resource type, relation, subject type, subject relation)]`` holds
    each kind's relationships; ``by_resource[(resource type, relation)]`` lists
    the kinds of one relation, to enumerate every subject of a resource;
    ``names[type]`` numbers one type's ids.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.revision: Revision = 0
        self.clock = clock
        self.lock = threading.Lock()
        self.names: dict[str, Names] = {}
        self.kinds: dict[KindKey, Kind] = {}
        self.by_resource: dict[tuple[str, str], list[Kind]] = {}
        self.size = 0
        self.expiring = 0
        """How many relationships carry an expiry; while 0, reads skip the time filter."""
        self.generation = 0
        """Incremented by every ``load``, so derived indexes know to rebuild."""
        self.epoch = 0
        """A sequence lock for readers on other threads: odd while changes are being applied,
        incremented again when they are all in. A decision that saw the same even epoch
        before and after read one whole revision; otherwise it may have read a mix."""
        self._listeners: list[Listener] = []
        self._rebuild_listeners: list[Callable[[], None]] = []
        self._moved_since_build = 0
        """Pairs added or removed since the build: a bound on ``changes()`` free to read."""

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

    def on_rebuild(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after relationships arrived in a rebuild (``extend``)."""
        self._rebuild_listeners.append(listener)

    # ---- writing (with ``lock`` held) -------------------------------------------------------

    def _names_of(self, type_name: str) -> Names:
        names = self.names.get(type_name)
        if names is None:
            names = self.names[type_name] = Names()
        return names

    def _kind(self, key: KindKey) -> Kind:
        kind = self.kinds.get(key)
        if kind is None:
            kind = Kind(key, self._names_of(key[0]), self._names_of(key[2]))
            self._add_kind(kind)
        return kind

    def _add_kind(self, kind: Kind) -> None:
        self.kinds[kind.key] = kind
        self.by_resource.setdefault((kind.key[0], kind.key[1]), []).append(kind)

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
        kind = self._kind((rtype, relation, stype, srel))
        r, s = kind.resources.intern(rid), kind.subjects.intern(sid)
        if kind.forward.add(r, s):
            kind.reverse.add(s, r)
            self.size += 1
            self._moved_since_build += 1
        else:
            previous = kind.values.pop((r, s), None)
            if previous is not None and previous.expires_at is not None:
                self.expiring -= 1
        if value is not True:
            assert isinstance(value, Edge)
            kind.values[(r, s)] = value
            if value.expires_at is not None:
                self.expiring += 1
        for listener in self._listeners:
            listener(rtype, rid, relation, stype, sid, srel, True)

    def drop(self, rtype: str, rid: str, relation: str, stype: str, sid: str, srel: str) -> None:
        """Delete one relationship if present."""
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return
        r, s = kind.resources.number(rid), kind.subjects.number(sid)
        if r < 0 or s < 0 or not kind.forward.discard(r, s):
            return
        kind.reverse.discard(s, r)
        self.size -= 1
        self._moved_since_build += 1
        previous = kind.values.pop((r, s), None)
        if previous is not None and previous.expires_at is not None:
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
        self.replace(build(snapshot.export_rows()), snapshot.revision)

    def replace(self, built: Built, revision: Revision) -> None:
        """Take ``built`` as the whole contents at ``revision`` (a load or a snapshot file)."""
        with self.lock:
            self._install(built, revision)

    def compact(self) -> None:
        """Rebuild the contents with every change since the build folded into the arrays.

        The same relationships at the same revision, but the ids are renumbered,
        so derived indexes rebuild (``generation``).
        """
        with self.lock:
            self._install(build(self.rows()), self.revision)

    def extend(self, rows: Iterable[ExportRow], revision: Revision) -> None:
        """Rebuild the contents with ``rows`` (new relationships) added, now at ``revision``.

        No per-relationship listener hears of them: the rebuild listeners do
        (``on_rebuild``), and derived indexes rebuild (``generation``).
        """
        with self.lock:
            self._install(build(itertools.chain(self.rows(), rows)), revision)
        for listener in self._rebuild_listeners:
            listener()

    def compact_if_changed(self) -> bool:
        """Compact when the changes since the build outgrow the arrays; whether it did.

        Changes live in per-object sets at several hundred bytes a relationship,
        the arrays at about eight; a large write applied from the change log
        (another server's import) is folded in rather than kept that way. At
        least ``COMPACT_MIN_CHANGES``, so a small index is not rebuilt often.
        """
        threshold = max(COMPACT_MIN_CHANGES - 1, COMPACT_AT * self.size)
        if self._moved_since_build <= threshold:  # the cheap bound: called after every write
            return False
        changes = self.changes()  # a walk of the overlay, so only past the bound
        self._moved_since_build = changes
        if changes <= threshold:
            return False
        self.compact()
        return True

    def _install(self, built: Built, revision: Revision) -> None:
        with self.applying():
            self.names, self.kinds, self.by_resource = built.names, {}, {}
            for kind in built.kinds:
                self._add_kind(kind)
            self.size = built.size
            self._moved_since_build = 0
            self.expiring = sum(
                1 for k in built.kinds for v in k.values.values() if v.expires_at is not None
            )
            self.generation += 1
            self.revision = revision

    def rows(self) -> Iterator[ExportRow]:
        """Every relationship as an export row, kind by kind (call with the lock held)."""
        for (rtype, relation, stype, srel), kind in self.kinds.items():
            rname, sname, values = kind.resources.name, kind.subjects.name, kind.values
            for r, s in kind.forward.pairs():
                value = values.get((r, s)) if values else None
                if value is None:
                    yield rtype, rname(r), relation, stype, sname(s), srel, None, None, None
                else:
                    yield export_row(rtype, rname(r), relation, stype, sname(s), srel, value)

    def changes(self) -> int:
        """How many relationships were added or removed since the build."""
        return sum(kind.forward.changes() for kind in self.kinds.values())

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
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return False
        r = kind.resources.number(rid)
        if r < 0:
            return False
        s = kind.subjects.number(sid)
        if s < 0 or not kind.forward.has(r, s):
            return False
        values = kind.values
        if not values:
            return True
        value = values.get((r, s))
        if value is None:
            return True
        return value if live(value, now) else False

    def subject_edges(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(subject id, value) of every live ``resource#relation@stype:…[#srel]``."""
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return []
        r = kind.resources.number(rid)
        if r < 0:
            return []
        found = kind.forward.members(r, self.lock)
        if not found:
            return []
        if not kind.values:
            name = kind.subjects.name
            return [(name(s), True) for s in found]
        return self._filtered(kind, kind.subjects, found, lambda s: (r, s), now)

    def _filtered(
        self,
        kind: Kind,
        names: Names,
        found: list[int],
        pair: Callable[[int], tuple[int, int]],
        now: float,
    ) -> list[tuple[str, bool | Edge]]:
        """(id, value) of each number found, without the expired (``pair`` makes the value key)."""
        name, values, expiring = names.name, kind.values, self.expiring
        out: list[tuple[str, bool | Edge]] = []
        for n in found:
            value = values.get(pair(n))
            if value is None:
                out.append((name(n), True))
            elif not expiring or live(value, now):
                out.append((name(n), value))
        return out

    def all_subject_edges(
        self, rtype: str, rid: str, relation: str, now: float
    ) -> list[tuple[str, str, str, bool | Edge]]:
        """(subject type, id, relation, value) of every live ``resource#relation@…``."""
        out: list[tuple[str, str, str, bool | Edge]] = []
        for kind in self.by_resource.get((rtype, relation), ()):
            _, _, stype, srel = kind.key
            for sid, v in self.subject_edges(rtype, rid, relation, stype, srel, now):
                out.append((stype, sid, srel, v))
        return out

    def resource_edges(
        self, rtype: str, relation: str, stype: str, sid: str, srel: str, now: float
    ) -> list[tuple[str, bool | Edge]]:
        """(resource id, value) of every live ``rtype:…#relation@stype:sid[#srel]``."""
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return []
        s = kind.subjects.number(sid)
        if s < 0:
            return []
        found = kind.reverse.members(s, self.lock)
        if not found:
            return []
        if not kind.values:
            name = kind.resources.name
            return [(name(r), True) for r in found]
        return self._filtered(kind, kind.resources, found, lambda r: (r, s), now)

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
    ) -> tuple[set[str], list[Sequence[str]]]:
        """``resource_ids`` with large slots as ascending runs; only when nothing expires.

        The runs are not copied into the set, so a caller after the first page
        of ids need not sort them all.
        """
        assert not self.expiring, "expiring relationships must be filtered one by one"
        runs: list[Sequence[str]] = []
        small = self._collect(rtype, relation, stype, subject_ids, subject_relation or "", runs)
        return small, runs

    def subject_id_runs(
        self, rtype: str, rid: str, relation: str, stype: str, srel: str
    ) -> tuple[set[str], list[Sequence[str]]]:
        """Subject ids of ``rtype:rid#relation@stype:…[#srel]``: a large slot as a sorted run.

        Only when nothing expires (expired ids must be filtered one by one).
        """
        assert not self.expiring, "expiring relationships must be filtered one by one"
        small: set[str] = set()
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return small, []
        r = kind.resources.number(rid)
        if r < 0:
            return small, []
        run = kind.forward.split(r, kind.subjects, self.lock, small)
        return small, [] if run is None else [run]

    def _collect(
        self,
        rtype: str,
        relation: str,
        stype: str,
        subject_ids: Iterable[str],
        srel: str,
        runs: list[Sequence[str]] | None,
    ) -> set[str]:
        """The resource ids under each subject's reverse row; large rows go to ``runs``."""
        found: set[str] = set()
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return found
        number, reverse, names, lock = kind.subjects.number, kind.reverse, kind.resources, self.lock
        for sid in subject_ids:
            s = number(sid)
            if s < 0:
                continue
            if runs is None:
                found.update(map(names.name, reverse.members(s, lock)))
                continue
            run = reverse.split(s, names, lock, found)
            if run is not None:
                runs.append(run)
        return found

    def pairs(self, rtype: str, relation: str, stype: str, srel: str) -> list[tuple[str, str]]:
        """(resource id, subject id) of every relationship of one kind (call with the lock held)."""
        kind = self.kinds.get((rtype, relation, stype, srel))
        if kind is None:
            return []
        rname, sname = kind.resources.name, kind.subjects.name
        return [(rname(r), sname(s)) for r, s in kind.forward.pairs()]


@dataclass(slots=True)
class Built:
    """Index contents made in one go: each type's names and each kind's rows."""

    names: dict[str, Names]
    kinds: list[Kind]
    size: int


def build(rows: Iterable[ExportRow]) -> Built:
    """Index contents for export rows (any order, each relationship once).

    Ids are numbered in arrival order first, then renumbered in string order
    once all are known, so that number order is id order.
    """
    seen: dict[str, dict[str, int]] = {}
    pairs: dict[KindKey, tuple[array[int], array[int]]] = {}
    conditional: list[tuple[KindKey, int, int, Edge]] = []
    size = 0
    for rtype, rid, relation, stype, sid, srel, caveat, context, expires in rows:
        key = (rtype, relation, stype, srel)
        columns = pairs.get(key)
        if columns is None:
            columns = pairs[key] = (numbers(), numbers())
            seen.setdefault(rtype, {})
            seen.setdefault(stype, {})
        rids, sids = seen[rtype], seen[stype]
        r = rids.get(rid)
        if r is None:
            r = rids[rid] = len(rids)
        s = sids.get(sid)
        if s is None:
            s = sids[sid] = len(sids)
        columns[0].append(r)
        columns[1].append(s)
        size += 1
        if caveat is not None or expires is not None:
            value = edge_of_row(caveat, context, expires)
            assert isinstance(value, Edge)
            conditional.append((key, r, s, value))
    names: dict[str, Names] = {}
    rank_of: dict[str, array[int]] = {}
    for type_name, ids in seen.items():
        arrival = list(ids)
        del ids
        order = sorted(range(len(arrival)), key=arrival.__getitem__)
        ranks = numbers(bytes(4 * len(order)))
        for rank, first in enumerate(order):
            ranks[first] = rank
        rank_of[type_name] = ranks
        names[type_name] = Names.of([arrival[i] for i in order])
    seen.clear()
    kinds: dict[KindKey, Kind] = {}
    for key, (rs, ss) in pairs.items():
        rtype, _, stype, _ = key
        rs = numbers(map(rank_of[rtype].__getitem__, rs))
        ss = numbers(map(rank_of[stype].__getitem__, ss))
        rnames, snames = names[rtype], names[stype]
        kinds[key] = Kind(
            key,
            rnames,
            snames,
            Adjacency.of(rs, ss, len(rnames)),
            Adjacency.of(ss, rs, len(snames)),
        )
    for key, r, s, value in conditional:
        rtype, _, stype, _ = key
        kinds[key].values[(rank_of[rtype][r], rank_of[stype][s])] = value
    return Built(names, list(kinds.values()), size)


def relationship_of(key: RelationshipKey, value: bool | Edge) -> Relationship:
    """The Relationship a (key, value) pair of the index stands for; the inverse of ``edge_of``."""
    if not isinstance(value, Edge):
        return Relationship.from_key(key)
    expires = None if value.expires_at is None else datetime.fromtimestamp(value.expires_at, UTC)
    return Relationship.from_key(key, value.caveat_name, value.context, expires)
