"""Package audience keeps "who holds this permission on this resource" current, per revision.

WatchPermission streams it: the audience at one revision (a ListSubjects),
then, for each later revision, the subjects whose answer changed. A change is
computed from the revision's changed relationships, not by listing again:

1. A changed relationship matters only if evaluating the permission can read
   its (type, relation) at all (``relations_read``, from the schema).
2. The subjects it can affect are those that reach its subject side: the
   subject itself, the members of a userset subject (``group:eng#member``),
   and, when the relation is an arrow's tupleset (``folder`` in
   ``folder->view``), the holders of the arrow's target on the object it
   names; when it is the tupleset of an ``.all()`` arrow, every holder of the
   permissions with that arrow on its resource too (all the objects must
   agree, so one more or one fewer changes them all). Each is looked up
   just before and at the revision, so a subject that left is found as
   surely as one that arrived.
3. Each candidate is checked before and at the revision; the ones whose answer
   differs are the change.

Any path from the resource to a subject whose answer moved passes through a
changed relationship, and the subject reaches that relationship's subject
side, so step 2 finds every subject that can change and step 3 keeps exactly
those that did. What a subject-by-subject change cannot say is sent as a
reset, the whole audience at that revision: a new policy, and a wildcard
(``user:*``) on the subject side of a changed relationship or among a
userset's members.

Relationships that lapse by expiry change answers without a revision; no
change log records the moment, so the stream carries no event for it (an
application that needs one re-lists after the expiry it set).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from policyd.consistency import Consistency
from policyd.decisions import AudienceChange, CheckRequest, CheckResult, FoundSubject
from policyd.engine.reachability import signed_leaves
from policyd.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef
from policyd.schema.ir import Arrow, ArrowKind, RelationRef, Schema
from policyd.store.base import ChangeEvent, ChangeKind, Revision

if TYPE_CHECKING:
    from policyd.engine.engine import Engine


@dataclass(frozen=True, slots=True)
class Watched:
    """The question a WatchPermission stream keeps answering: who holds ``permission``."""

    resource: ObjectRef
    permission: str
    subject_type: str
    subject_relation: str | None = None

    def names(self, subject: SubjectRef) -> bool:
        """Whether ``subject`` is of the kind the stream lists (a wildcard is not)."""
        return (
            subject.type == self.subject_type
            and subject.relation == self.subject_relation
            and subject.id != WILDCARD
        )


def relations_read(schema: Schema, type_name: str, member: str) -> frozenset[tuple[str, str]]:
    """The stored (type, relation) pairs evaluating ``type_name#member`` may read, at any depth.

    Both signs count: a relationship under a subtracted side changes answers too.
    """
    read: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    pending = [(type_name, member)]
    while pending:
        at = pending.pop()
        if at in seen:
            continue
        seen.add(at)
        definition = schema.definitions.get(at[0])
        if definition is None:
            continue
        relation = definition.relations.get(at[1])
        if relation is not None:
            read.add(at)
            pending += [(a.type, a.relation) for a in relation.allowed if a.relation]
            continue
        permission = definition.permissions.get(at[1])
        if permission is None:
            continue
        for leaf, _ in signed_leaves(permission.rewrite):
            if isinstance(leaf, RelationRef):
                pending.append((at[0], leaf.name))
            elif isinstance(leaf, Arrow):
                read.add((at[0], leaf.tupleset))
                tupleset = definition.relations.get(leaf.tupleset)
                allowed = tupleset.allowed if tupleset is not None else ()
                pending += [(a.type, leaf.target) for a in allowed]
    return frozenset(read)


def arrows_over(schema: Schema, type_name: str, tupleset: str) -> Iterator[tuple[str, Arrow]]:
    """Each arrow over ``type_name#tupleset``, with the permission it sits in."""
    definition = schema.definitions.get(type_name)
    if definition is None:
        return
    for name, permission in definition.permissions.items():
        for leaf, _ in signed_leaves(permission.rewrite):
            if isinstance(leaf, Arrow) and leaf.tupleset == tupleset:
                yield name, leaf


class _ResetNeeded(Exception):
    """A wildcard met while gathering candidates: the change is sent as a reset."""


class AudienceTracker:
    """Computes one watched audience's change at each revision, from that revision's events."""

    def __init__(self, engine: Engine, watched: Watched) -> None:
        self._engine = engine
        self.watched = watched

    def snapshot(self, revision: Revision) -> AudienceChange:
        """The whole audience at ``revision``, as a reset."""
        listing = self._engine.list_subjects(
            self.watched.resource,
            self.watched.permission,
            self.watched.subject_type,
            self.watched.subject_relation,
            consistency=self._at(revision),
        )
        return AudienceChange(listing.token, listing.subjects, reset=True)

    def change(
        self, before: Revision, revision: Revision, events: Sequence[ChangeEvent]
    ) -> AudienceChange:
        """The subjects whose answer changed from ``before`` to ``revision``.

        ``events`` are every change log entry after ``before`` up to ``revision``
        (the stream's previous revision and this one: revisions need not be
        consecutive numbers, and one without events changed nothing).

        Raises:
            RevisionUnavailableError: ``before`` was garbage-collected.
        """
        if any(e.kind is ChangeKind.POLICY for e in events):
            return self.snapshot(revision)
        schema = self._engine.schema(self._at(revision))
        watched = self.watched
        read = relations_read(schema, watched.resource.type, watched.permission)
        relevant = [
            e.relationship
            for e in events
            if e.relationship is not None
            and (e.relationship.resource.type, e.relationship.relation) in read
        ]
        token = self._engine.tokens.token(revision)
        if not relevant:
            return AudienceChange(token, ())
        try:
            candidates = self._candidates(schema, relevant, before, revision)
        except _ResetNeeded:
            return self.snapshot(revision)
        ordered = sorted(candidates, key=lambda s: (s.id, s.relation or ""))
        changed = tuple(
            FoundSubject(subject, now.permissionship, now.missing)
            for subject, was, now in zip(
                ordered,
                self._answers(ordered, before),
                self._answers(ordered, revision),
                strict=True,
            )
            if (was.permissionship, was.missing) != (now.permissionship, now.missing)
        )
        return AudienceChange(token, changed)

    def _candidates(
        self, schema: Schema, changed: Iterable[Relationship], before: Revision, revision: Revision
    ) -> set[SubjectRef]:
        """Every subject of the watched kind that reaches a changed relationship's subject side."""
        watched = self.watched
        found: set[SubjectRef] = set()
        for relationship in changed:
            subject = relationship.subject
            if subject.id == WILDCARD:
                if subject.type == watched.subject_type and watched.subject_relation is None:
                    raise _ResetNeeded
                continue
            if watched.names(subject):
                found.add(subject)
            target = ObjectRef(subject.type, subject.id)
            arrows = list(arrows_over(schema, relationship.resource.type, relationship.relation))
            # The members the arrows read on the objects the tupleset names.
            members = {arrow.target for _, arrow in arrows}
            if subject.relation is not None:
                members.add(subject.relation)
            definition = schema.definitions.get(subject.type)
            for member in members:
                if definition is not None and definition.member(member) is not None:
                    for at in (before, revision):
                        found |= self._holders(target, member, at)
            # Every object an .all() arrow walks to must agree, so one more (or one fewer)
            # object named by the tupleset can change every holder of the permission.
            for permission in {name for name, a in arrows if a.kind is ArrowKind.ALL}:
                for at in (before, revision):
                    found |= self._holders(relationship.resource, permission, at)
        return found

    def _holders(self, target: ObjectRef, member: str, revision: Revision) -> set[SubjectRef]:
        """The subjects of the watched kind holding ``target#member`` at ``revision``."""
        listing = self._engine.list_subjects(
            target,
            member,
            self.watched.subject_type,
            self.watched.subject_relation,
            consistency=self._at(revision),
        )
        holders: set[SubjectRef] = set()
        for found in listing.subjects:
            if found.subject.id == WILDCARD:
                raise _ResetNeeded
            holders.add(found.subject)
        return holders

    def _answers(self, subjects: Sequence[SubjectRef], revision: Revision) -> list[CheckResult]:
        """Each subject's answer on the watched resource at ``revision``."""
        if not subjects:
            return []
        watched = self.watched
        return self._engine.check_many(
            [CheckRequest(watched.resource, watched.permission, s) for s in subjects],
            consistency=self._at(revision),
        )

    def _at(self, revision: Revision) -> Consistency:
        return Consistency.at_exact_snapshot(self._engine.tokens.token(revision))
