"""Package lookup_resources answers ListObjects: candidates by reverse walk, verified by Check.

The walk over-approximates (it ignores caveats, intersections and
exclusions), then every candidate is checked, so the answer agrees with Check
by construction. The walk is set-at-a-time: one read per (type, relation) per
step, however many objects the step holds. Both parts are generators that
yield at checkpoints (engine/deadline.py), so a deadline or a server's time
slicing can stop or pause them.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from policyd.decisions import FoundObject
from policyd.engine.check import CheckRun
from policyd.engine.deadline import Steps
from policyd.engine.reachability import ReverseIndex
from policyd.engine.reader import GraphReader
from policyd.engine.results import missing_of, permissionship, settled
from policyd.relationship import WILDCARD, SubjectRef


@dataclass(slots=True)
class Candidates:
    """Resource ids that may hold a permission.

    ``runs`` are ascending sequences taken as they are from large index rows,
    so the first page of an answer needs no full sort.
    """

    ids: set[str] = field(default_factory=set)
    runs: list[Sequence[str]] = field(default_factory=list)

    def ascending(self, after: str | None) -> Iterator[str]:
        """Every candidate above ``after`` once, in ascending order, lazily."""
        small = sorted(i for i in self.ids if after is None or i > after)
        runs = [r[bisect.bisect_right(r, after) :] if after is not None else r for r in self.runs]
        previous = None
        for resource_id in heapq.merge(small, *runs):
            if resource_id != previous:
                yield resource_id
                previous = resource_id


def _out_edges(index: ReverseIndex, key: tuple[str, str]) -> list[tuple[str, str]]:
    """The keys a walk moves to from ``key``."""
    return [
        *index.holders.get(key, ()),
        *((key[0], p) for p in index.computed.get(key, ())),
        *((owner, p) for owner, _, _, p in index.arrows.get(key, ())),
    ]


def _reaches(index: ReverseIndex, start: tuple[str, str], goal: tuple[str, str]) -> bool:
    seen: set[tuple[str, str]] = set()
    stack = _out_edges(index, start)
    while stack:
        key = stack.pop()
        if key == goal:
            return True
        if key not in seen:
            seen.add(key)
            stack.extend(_out_edges(index, key))
    return False


def _sinks(index: ReverseIndex, target: tuple[str, str]) -> set[tuple[str, str]]:
    """Keys whose ids can go straight into the answer, with no walk on from them.

    The target is one when no walk from it comes back to it. Another key is
    one when it moves on only through permissions naming it, and each of
    those is the target or a sink, or never leads to the target at all.
    """
    if _reaches(index, target, target):
        return set()
    sinks = {target}
    changed = True
    while changed:
        changed = False
        for key, permissions in index.computed.items():
            if key in sinks or index.holders.get(key) or index.arrows.get(key):
                continue
            outs = [(key[0], p) for p in permissions]
            useful = [o for o in outs if o in sinks]
            if useful and all(o in sinks or not _reaches(index, o, target) for o in outs):
                sinks.add(key)
                changed = True
    return sinks


def reachable_resources(
    reader: GraphReader,
    index: ReverseIndex,
    subject: SubjectRef,
    resource_type: str,
    permission: str,
) -> Steps[Candidates]:
    """Ids of ``resource_type`` that may grant ``permission`` to the subject (a superset).

    A generator: it yields at a checkpoint after each step of the walk.
    """
    target = (resource_type, permission)
    sinks = _sinks(index, target)
    answer = Candidates()
    reached: dict[tuple[str, str], set[str]] = {}
    frontier: dict[tuple[str, str], set[str]] = {}
    leads: dict[tuple[str, str], bool] = {target: True}

    def relevant(key: tuple[str, str]) -> bool:
        """Whether ids reached at ``key`` can ever lead to the target; others are not read."""
        known = leads.get(key)
        if known is None:
            known = leads[key] = _reaches(index, key, target)
        return known

    def add(type_name: str, member: str, ids: set[str]) -> None:
        if (type_name, member) in sinks:
            answer.ids |= ids
            return
        if not relevant((type_name, member)):
            return
        known = reached.setdefault((type_name, member), set())
        new = ids - known
        if new:
            known |= new
            frontier.setdefault((type_name, member), set()).update(new)

    def add_related(
        type_name: str,
        member: str,
        relation: str,
        stype: str,
        sids: Iterable[str],
        srel: str | None,
    ) -> None:
        """Add resources holding any of the subjects in ``relation``; sinks take runs as is."""
        if (type_name, member) in sinks:
            small, runs = reader.resource_id_runs(
                type_name, relation, subject_type=stype, subject_ids=sids, subject_relation=srel
            )
            answer.ids |= small
            answer.runs.extend(runs)
            return
        if relevant((type_name, member)):
            ids = reader.resource_ids(
                type_name, relation, subject_type=stype, subject_ids=sids, subject_relation=srel
            )
            add(type_name, member, ids)

    subject_relation = subject.relation or ""
    if subject.relation:
        add(subject.type, subject.relation, {subject.id})
    else:
        for permission_name in index.self_permissions.get(subject.type, ()):
            add(subject.type, permission_name, {subject.id})
    for holder_type, holder_relation in index.holders.get((subject.type, subject_relation), ()):
        add_related(
            holder_type,
            holder_relation,
            holder_relation,
            subject.type,
            (subject.id,),
            subject.relation,
        )
    if not subject.relation and subject.id != WILDCARD:
        for holder_type, holder_relation in index.wildcard_holders.get(subject.type, ()):
            add_related(
                holder_type, holder_relation, holder_relation, subject.type, (WILDCARD,), None
            )

    while frontier:
        yield
        (type_name, member), ids = frontier.popitem()
        for holder_type, holder_relation in index.holders.get((type_name, member), ()):
            add_related(holder_type, holder_relation, holder_relation, type_name, ids, member)
        for permission_name in index.computed.get((type_name, member), ()):
            add(type_name, permission_name, ids)
        for owner_type, tupleset, via, permission_name in index.arrows.get((type_name, member), ()):
            add_related(owner_type, permission_name, tupleset, type_name, ids, via or None)
    answer.ids |= reached.get(target, set())
    return answer


def found_objects(
    walk: Steps[Candidates],
    run: CheckRun,
    resource_type: str,
    permission: str,
    after: str | None,
) -> Iterator[FoundObject | None]:
    """The resources that hold the permission, ascending after ``after``, checked one by one.

    Yields ``None`` at checkpoints; a failed decision raises its error.
    """
    candidates = yield from walk
    for resource_id in candidates.ascending(after):
        yield None
        value = settled(run.check(resource_type, resource_id, permission, 0))
        if value is not False:
            yield FoundObject(resource_id, permissionship(value), missing_of(value))
