"""Package lookup answers ListObjects and ListSubjects: candidates by graph walk, verified by Check.

Both walks over-approximate (they ignore caveats, intersections and
exclusions), then every candidate is checked, so the answers agree with Check
by construction. The walks are set-at-a-time: one read per (type, relation)
per step, however many objects the step holds.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from policyd.engine.check import CheckRun
from policyd.engine.graph import GraphReader
from policyd.engine.index import Edge
from policyd.engine.plan import Plan
from policyd.engine.reachability import ReverseIndex, leaves
from policyd.engine.results import Partial
from policyd.relationship import WILDCARD, SubjectRef
from policyd.schema.ir import (
    Arrow,
    ArrowKind,
    Exclusion,
    Intersection,
    RelationRef,
    Rewrite,
    SelfRef,
    Union,
)


@dataclass(slots=True)
class Candidates:
    """Resource ids that may hold a permission.

    ``runs`` are ascending lists taken as they are from large index slots, so
    the first page of an answer needs no full sort.
    """

    ids: set[str] = field(default_factory=set)
    runs: list[list[str]] = field(default_factory=list)

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
) -> Candidates:
    """Ids of ``resource_type`` that may grant ``permission`` to the subject (a superset)."""
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
            small, runs = reader.resource_id_runs(type_name, relation, stype, sids, srel)
            answer.ids |= small
            answer.runs.extend(runs)
            return
        if relevant((type_name, member)):
            add(type_name, member, reader.resource_ids(type_name, relation, stype, sids, srel))

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
        (type_name, member), ids = frontier.popitem()
        for holder_type, holder_relation in index.holders.get((type_name, member), ()):
            add_related(holder_type, holder_relation, holder_relation, type_name, ids, member)
        for permission_name in index.computed.get((type_name, member), ()):
            add(type_name, permission_name, ids)
        for owner_type, tupleset, via, permission_name in index.arrows.get((type_name, member), ()):
            add_related(owner_type, permission_name, tupleset, type_name, ids, via or None)
    answer.ids |= reached.get(target, set())
    return answer


@dataclass(frozen=True, slots=True)
class FoundSubject:
    """A ListSubjects answer: a subject, or a wildcard with the subjects it excludes."""

    subject: SubjectRef
    result: Partial
    excluded: tuple[SubjectRef, ...] = ()


@dataclass(slots=True)
class SubjectCandidates:
    """What the walk under a permission found: subject ids, a wildcard, and exactness.

    ``exact`` means the walk alone decides: no intersection, exclusion,
    ``.all()`` arrow or caveat on the way, so every subject found holds the
    permission and none needs checking.
    """

    ids: set[str] = field(default_factory=set)
    wildcard: bool = False
    exact: bool = True


def candidate_subjects(
    plan: Plan,
    reader: GraphReader,
    resource_type: str,
    resource_id: str,
    permission: str,
    subject_type: str,
    subject_relation: str | None,
    max_visits: int,
) -> SubjectCandidates:
    """Subjects of the wanted type under the permission, read as relationship values.

    Subtracted branches are walked too: their subjects are the ones a wildcard
    answer must list as excluded.
    """
    wanted_relation = subject_relation or ""
    found = SubjectCandidates()
    seen: set[tuple[str, str, str]] = set()
    stack = [(resource_type, resource_id, permission)]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > max_visits:
            found.exact = False
            break
        type_name, rid, member = key
        if (type_name, member) == (subject_type, wanted_relation):
            found.ids.add(rid)
        definition = plan.schema.definition(type_name)
        if definition is None:
            continue
        if member in definition.relations:
            for stype, sid, srel, value in reader.all_subject_edges(type_name, rid, member):
                if isinstance(value, Edge) and value.caveat_name is not None:
                    found.exact = False
                if stype == subject_type and srel == wanted_relation:
                    if sid == WILDCARD:
                        found.wildcard = True
                    else:
                        found.ids.add(sid)
                if srel:
                    stack.append((stype, sid, srel))
            continue
        granted = definition.permissions.get(member)
        if granted is None:
            continue
        if found.exact and not _monotone(granted.rewrite):
            found.exact = False
        for node in leaves(granted.rewrite, subtracted=True):
            if isinstance(node, RelationRef):
                stack.append((type_name, rid, node.name))
            elif isinstance(node, Arrow):
                for stype, sid, _, value in reader.all_subject_edges(type_name, rid, node.tupleset):
                    if isinstance(value, Edge) and value.caveat_name is not None:
                        found.exact = False
                    stack.append((stype, sid, node.target))
            elif isinstance(node, SelfRef) and type_name == subject_type and not wanted_relation:
                found.ids.add(rid)
    return found


def _monotone(node: Rewrite) -> bool:
    """True for unions of relations, permissions, ``->`` arrows, ``self`` and nil only."""
    match node:
        case Union(children=children):
            return all(_monotone(c) for c in children)
        case Intersection() | Exclusion():
            return False
        case Arrow(kind=kind):
            return kind is ArrowKind.ANY
        case _:
            return True


def holding_subjects(
    candidates: SubjectCandidates,
    make_run: Callable[[SubjectRef], CheckRun],
    resource_type: str,
    resource_id: str,
    permission: str,
    subject_type: str,
    subject_relation: str | None,
) -> list[FoundSubject]:
    """The candidates that hold the permission, a granted wildcard first with those denied.

    An exact walk needs no checks; otherwise each candidate is checked.
    """
    wildcard = candidates.wildcard and not subject_relation
    if candidates.exact:
        found = [
            FoundSubject(SubjectRef(subject_type, sid, subject_relation), True)
            for sid in sorted(candidates.ids)
        ]
        if wildcard:
            found.insert(0, FoundSubject(SubjectRef(subject_type, WILDCARD), True))
        return found
    results: list[FoundSubject] = []
    denied: list[SubjectRef] = []
    for subject_id in sorted(candidates.ids):
        subject = SubjectRef(subject_type, subject_id, subject_relation)
        value = make_run(subject).check(resource_type, resource_id, permission, 0)
        if value is False:
            denied.append(subject)
        else:
            results.append(FoundSubject(subject, value))
    if wildcard:
        subject = SubjectRef(subject_type, WILDCARD)
        value = make_run(subject).check(resource_type, resource_id, permission, 0)
        if value is not False:
            results.insert(0, FoundSubject(subject, value, tuple(denied)))
    return results
