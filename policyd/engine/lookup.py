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

from policyd.decisions import ExcludedSubject, FoundSubject
from policyd.engine.check import CheckRun
from policyd.engine.index import Edge
from policyd.engine.plan import Plan
from policyd.engine.reachability import ReverseIndex, signed_leaves
from policyd.engine.reader import GraphReader
from policyd.engine.results import missing_of, permissionship, settled
from policyd.errors import ResourceExhaustedError
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
        (type_name, member), ids = frontier.popitem()
        for holder_type, holder_relation in index.holders.get((type_name, member), ()):
            add_related(holder_type, holder_relation, holder_relation, type_name, ids, member)
        for permission_name in index.computed.get((type_name, member), ()):
            add(type_name, permission_name, ids)
        for owner_type, tupleset, via, permission_name in index.arrows.get((type_name, member), ()):
            add_related(owner_type, permission_name, tupleset, type_name, ids, via or None)
    answer.ids |= reached.get(target, set())
    return answer


@dataclass(slots=True)
class SubjectCandidates:
    """What the walk under a permission found: subject ids, a wildcard, and exactness.

    ``exact`` means the walk alone decides: no intersection, exclusion,
    ``.all()`` arrow or caveat on the way, so every subject found holds the
    permission and none needs checking.
    """

    ids: set[str] = field(default_factory=set)
    """Every subject id found, on granting and on subtracted paths."""
    granting: set[str] = field(default_factory=set)
    """The ids found on a path under an even number of subtracted sides: they may be granted
    by name; the others can only be excluded from a wildcard."""
    wildcard: bool = False
    """A wildcard of the wanted type was found on a path that can grant."""
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

    Raises:
        ResourceExhaustedError: the walk would visit more than ``max_visits``
            usersets; a partial list is never returned as if it were whole.
    """
    wanted_relation = subject_relation or ""
    found = SubjectCandidates()
    walked: set[tuple[str, str, str, bool]] = set()
    """Keys walked so far, each with the polarity of its path (a key may be walked twice)."""
    stack = [(resource_type, resource_id, permission, True)]

    def reach(sid: str, granting: bool) -> None:
        found.ids.add(sid)
        if granting:
            found.granting.add(sid)

    while stack:
        entry = stack.pop()
        if entry in walked:
            continue
        walked.add(entry)
        type_name, rid, member, granting = entry
        if len(walked) > max_visits:
            raise ResourceExhaustedError(
                f"listing subjects of {resource_type}:{resource_id}#{permission} visits more "
                f"than {max_visits:,} usersets (the engine's max_subject_visits); the answer "
                "is not sent in part"
            )
        if (type_name, member) == (subject_type, wanted_relation):
            reach(rid, granting)
        definition = plan.schema.definition(type_name)
        if definition is None:
            continue
        if member in definition.relations:
            for stype, sid, srel, value in reader.all_subject_edges(type_name, rid, member):
                if isinstance(value, Edge) and value.caveat_name is not None:
                    found.exact = False
                if stype == subject_type and srel == wanted_relation:
                    if sid != WILDCARD:
                        reach(sid, granting)
                    elif granting:
                        found.wildcard = True
                if srel:
                    stack.append((stype, sid, srel, granting))
            continue
        granted = definition.permissions.get(member)
        if granted is None:
            continue
        if found.exact and not _monotone(granted.rewrite):
            found.exact = False
        for node, negations in signed_leaves(granted.rewrite):
            on = granting == (negations % 2 == 0)  # under two subtractions a leaf grants again
            if isinstance(node, RelationRef):
                stack.append((type_name, rid, node.name, on))
            elif isinstance(node, Arrow):
                for stype, sid, _, value in reader.all_subject_edges(type_name, rid, node.tupleset):
                    if isinstance(value, Edge) and value.caveat_name is not None:
                        found.exact = False
                    stack.append((stype, sid, node.target, on))
            elif isinstance(node, SelfRef) and type_name == subject_type and not wanted_relation:
                reach(rid, on)
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
    """The candidates that hold the permission, a granted wildcard first with its exclusions.

    An exact walk needs no checks; otherwise each candidate is checked. As in
    SpiceDB, a subject is listed by name when found on a granting path, and a
    wildcard excludes every candidate it does not cover as it covers anyone
    else: those denied for certain, and those only conditionally held under a
    wildcard that holds outright (a conditional exclusion, which is all SpiceDB
    reports for a subject found only under the subtracted side). A failed
    decision raises its error.
    """
    wildcard = candidates.wildcard and not subject_relation
    if candidates.exact:
        found = [
            FoundSubject(SubjectRef(subject_type, sid, subject_relation))
            for sid in sorted(candidates.ids)
        ]
        if wildcard:
            found.insert(0, FoundSubject(SubjectRef(subject_type, WILDCARD)))
        return found

    def decide(subject: SubjectRef) -> bool | frozenset[str]:
        return settled(make_run(subject).check(resource_type, resource_id, permission, 0))

    results: list[FoundSubject] = []
    decided: list[tuple[SubjectRef, bool | frozenset[str]]] = []
    for subject_id in sorted(candidates.ids):
        subject = SubjectRef(subject_type, subject_id, subject_relation)
        value = decide(subject)
        decided.append((subject, value))
        if value is not False and subject_id in candidates.granting:
            results.append(FoundSubject(subject, permissionship(value), missing_of(value)))
    if wildcard:
        everyone = decide(SubjectRef(subject_type, WILDCARD))
        if everyone is not False:
            excluded = tuple(
                ExcludedSubject(subject, missing_of(value))
                for subject, value in decided
                if value is False or (value is not True and value != everyone)
            )
            results.insert(
                0,
                FoundSubject(
                    SubjectRef(subject_type, WILDCARD),
                    permissionship(everyone),
                    missing_of(everyone),
                    excluded,
                ),
            )
    return results
