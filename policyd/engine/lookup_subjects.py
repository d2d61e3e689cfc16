"""Package lookup_subjects answers ListSubjects: a walk down the permission, then checks.

The walk follows the permission's rewrite and the usersets its relations
hold, and collects the subject ids of the wanted kind it meets: small slots
as sets, large ones as the index's sorted copies, unread. Subjects then come
out in ascending id order by merging those, so the first of a million-member
group is answered at once and a cursor is just the last id sent. Subjects
found on a path under an odd number of subtracted sides can only be excluded,
never granted by name.

When only unions of relations, permissions and ``->`` arrows without caveats
lie under the permission, the walk's answer is final ("exact") and nothing is
checked; otherwise each candidate is checked as Check would. A wildcard comes
last, with the subjects it excludes: those denied for certain, and those only
conditionally held under a wildcard that holds outright (SpiceDB's
conditional exclusion). Both parts are generators that yield at checkpoints
(engine/deadline.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from policyd.decisions import ExcludedSubject, FoundSubject
from policyd.engine.check import CheckRun
from policyd.engine.deadline import Steps
from policyd.engine.index import Edge
from policyd.engine.lookup_resources import Candidates
from policyd.engine.plan import Plan
from policyd.engine.reachability import signed_leaves
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
class SubjectCandidates:
    """What the walk under a permission found: subject ids by polarity, a wildcard, exactness.

    ``exact`` means the walk alone decides: no intersection, exclusion,
    ``.all()`` arrow or caveat on the way, so every subject found holds the
    permission and none needs checking.
    """

    granting: Candidates = field(default_factory=Candidates)
    """Ids found under an even number of subtracted sides: they may be granted by name."""
    subtracted: Candidates = field(default_factory=Candidates)
    """Ids found only under an odd number: they can only be excluded from a wildcard."""
    wildcard: bool = False
    """A wildcard of the wanted type was found on a path that can grant."""
    exact: bool = True

    def ascending(self, after: str | None) -> Iterator[tuple[str, bool]]:
        """Every candidate id above ``after`` once, ascending, with whether it may be granted."""
        merged = heapq.merge(
            ((i, 0) for i in self.granting.ascending(after)),
            ((i, 1) for i in self.subtracted.ascending(after)),
        )
        previous = None
        for subject_id, side in merged:
            if subject_id != previous:
                previous = subject_id
                yield subject_id, side == 0


def walk_subjects(
    plan: Plan,
    reader: GraphReader,
    resource_type: str,
    resource_id: str,
    permission: str,
    subject_type: str,
    subject_relation: str | None,
    max_visits: int,
) -> Steps[SubjectCandidates]:
    """Subjects of the wanted type under the permission, with a checkpoint per userset visited.

    Raises:
        ResourceExhaustedError: the walk would visit more than ``max_visits``
            usersets; a partial list is never returned as if it were whole.
    """
    wanted = subject_relation or ""
    found = SubjectCandidates()
    walked: set[tuple[str, str, str, bool]] = set()
    """Keys walked so far, each with the polarity of its path (a key may be walked twice)."""
    stack = [(resource_type, resource_id, permission, True)]
    while stack:
        yield
        entry = stack.pop()
        if entry in walked:
            continue
        walked.add(entry)
        if len(walked) > max_visits:
            raise ResourceExhaustedError(
                f"listing subjects of {resource_type}:{resource_id}#{permission} visits more "
                f"than {max_visits:,} usersets (the engine's max_subject_visits); the answer "
                "is not sent in part"
            )
        type_name, rid, member, granting = entry
        side = found.granting if granting else found.subtracted
        if (type_name, member) == (subject_type, wanted):
            side.ids.add(rid)
        definition = plan.schema.definition(type_name)
        if definition is None:
            continue
        relation = definition.relations.get(member)
        if relation is not None:
            for allowed in relation.allowed:
                if allowed.type == subject_type and (allowed.relation or "") == wanted:
                    if allowed.caveat is not None:
                        found.exact = False
                    if not allowed.wildcard:
                        small, runs = reader.subject_id_runs(
                            type_name,
                            rid,
                            member,
                            subject_type=subject_type,
                            subject_relation=wanted,
                        )
                        small.discard(WILDCARD)
                        side.ids |= small
                        side.runs.extend(runs)
                    else:
                        value = reader.edge(type_name, rid, member, subject_type, WILDCARD, "")
                        if isinstance(value, Edge) and value.caveat_name is not None:
                            found.exact = False
                        if value is not False and granting:
                            found.wildcard = True
                if allowed.relation is not None and not allowed.wildcard:
                    for sid, value in reader.subject_edges(
                        type_name, rid, member, allowed.type, allowed.relation
                    ):
                        if isinstance(value, Edge) and value.caveat_name is not None:
                            found.exact = False
                        stack.append((allowed.type, sid, allowed.relation, granting))
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
            elif isinstance(node, SelfRef) and type_name == subject_type and not wanted:
                (found.granting if on else found.subtracted).ids.add(rid)
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


def found_subjects(
    walk: Steps[SubjectCandidates],
    make_run: Callable[[SubjectRef], CheckRun],
    resource_type: str,
    resource_id: str,
    permission: str,
    subject_type: str,
    subject_relation: str | None,
    after: str | None,
) -> Iterator[FoundSubject | None]:
    """The subjects that hold the permission, ascending after ``after``, then any wildcard.

    Yields ``None`` at checkpoints. A failed decision raises its error. The
    wildcard's exclusions cover every candidate, also those before ``after``.
    """
    candidates = yield from walk

    def decide(subject: SubjectRef) -> bool | frozenset[str]:
        return settled(make_run(subject).check(resource_type, resource_id, permission, 0))

    wildcard = candidates.wildcard and not subject_relation
    everyone: bool | frozenset[str] = False
    if wildcard and not candidates.exact:
        everyone = decide(SubjectRef(subject_type, WILDCARD))
    excluded: list[ExcludedSubject] = []

    def exclusion(subject: SubjectRef, value: bool | frozenset[str]) -> None:
        if everyone is not False and (value is False or (value is not True and value != everyone)):
            excluded.append(ExcludedSubject(subject, missing_of(value)))

    if after is not None and everyone is not False:
        for subject_id, _ in candidates.ascending(None):
            if subject_id > after:
                break
            yield None
            subject = SubjectRef(subject_type, subject_id, subject_relation)
            exclusion(subject, decide(subject))
    for subject_id, grants in candidates.ascending(after):
        yield None
        subject = SubjectRef(subject_type, subject_id, subject_relation)
        if candidates.exact:
            if grants:
                yield FoundSubject(subject)
            continue
        value = decide(subject)
        exclusion(subject, value)
        if value is not False and grants:
            yield FoundSubject(subject, permissionship(value), missing_of(value))
    if not wildcard:
        return
    if candidates.exact:
        yield FoundSubject(SubjectRef(subject_type, WILDCARD))
    elif everyone is not False:
        yield FoundSubject(
            SubjectRef(subject_type, WILDCARD),
            permissionship(everyone),
            missing_of(everyone),
            tuple(excluded),
        )
