"""Package decisions holds the values questions and answers are made of, on both sides of the wire.

The engine returns them and the client rebuilds them from responses, so an
application that embeds the engine and one that talks to a server handle the
same ``CheckResult``, ``FoundSubject`` and ``ExpandNode``. They depend on
nothing but relationship values. (Inside the engine a decision is a cheaper
value, engine/results.py; these are what leaves it.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from policyd.relationship import WILDCARD, ObjectRef, Relationship, SubjectRef


class Permissionship(Enum):
    """The answer to a Check."""

    HAS_PERMISSION = "has_permission"
    NO_PERMISSION = "no_permission"
    CONDITIONAL = "conditional"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a decision came out as it did: one evaluated step and the steps beneath it.

    ``what`` names the step: a member (``document:1#view``), an operation as
    policy text (``viewer & reviewer``, ``folder->view``) or a relationship
    found (``relationship document:1#viewer@user:ann``); ``result`` is its
    answer; ``note`` adds detail such as a caveat's outcome, a cycle, or that
    there was nothing to follow.
    """

    what: str
    result: Permissionship
    children: tuple[Explanation, ...] = ()
    note: str = ""
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One question: may ``subject`` do ``permission`` on ``resource``, with caveat context."""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one Check and the consistency token of the revision it was made at.

    ``missing`` names the caveat parameters a conditional answer still needs.
    """

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    permissionship: Permissionship
    token: str
    missing: tuple[str, ...] = ()
    explanation: Explanation | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        """True only for HAS_PERMISSION."""
        return self.permissionship is Permissionship.HAS_PERMISSION


@dataclass(frozen=True, slots=True)
class FoundObject:
    """A ListObjects answer: a resource id, granted or conditional on missing parameters."""

    resource_id: str
    permissionship: Permissionship = Permissionship.HAS_PERMISSION
    missing: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        """True when the answer depends on caveat parameters not given."""
        return self.permissionship is Permissionship.CONDITIONAL


@dataclass(frozen=True, slots=True)
class ExcludedSubject:
    """A subject a wildcard answer leaves out: for certain, or unless its caveats say otherwise.

    ``missing`` is empty for a certain exclusion; a conditional one names the
    caveat parameters the subject's own decision still needs (SpiceDB lists
    such a subject among the wildcard's exclusions as CONDITIONAL).
    """

    subject: SubjectRef
    missing: tuple[str, ...] = ()

    def __str__(self) -> str:
        """Validation-file notation: ``user:u2``, or ``user:u2[...]`` if conditional."""
        return f"{self.subject}[...]" if self.missing else str(self.subject)


@dataclass(frozen=True, slots=True)
class FoundSubject:
    """A ListSubjects answer: a subject, or a wildcard with the subjects it excludes."""

    subject: SubjectRef
    permissionship: Permissionship = Permissionship.HAS_PERMISSION
    missing: tuple[str, ...] = ()
    excluded: tuple[ExcludedSubject, ...] = ()

    def __str__(self) -> str:
        """Validation-file notation: ``user:a``, ``user:* - {user:b}``, ``user:c[...]``."""
        text = str(self.subject)
        if self.excluded:
            text += " - {" + ", ".join(sorted(str(e) for e in self.excluded)) + "}"
        return text + ("[...]" if self.permissionship is Permissionship.CONDITIONAL else "")


def answer_for(
    found: Iterable[FoundSubject], subject: SubjectRef
) -> tuple[Permissionship, tuple[str, ...]]:
    """What a ListSubjects answer says of one subject, and the parameters it still needs.

    The subject's own entry if it has one; else a wildcard's of its type less
    the wildcard's exclusions (a conditional exclusion makes it conditional);
    else NO_PERMISSION.
    """
    wildcard: FoundSubject | None = None
    for entry in found:
        if entry.subject == subject:
            return entry.permissionship, entry.missing
        if entry.subject.id == WILDCARD and entry.subject.type == subject.type:
            wildcard = entry
    if wildcard is None or subject.relation is not None:
        return Permissionship.NO_PERMISSION, ()
    for excluded in wildcard.excluded:
        if excluded.subject == subject:
            if excluded.missing:
                return Permissionship.CONDITIONAL, excluded.missing
            return Permissionship.NO_PERMISSION, ()
    return wildcard.permissionship, wildcard.missing


@dataclass(frozen=True, slots=True)
class AudienceChange:
    """How the subjects holding a permission on a resource changed at one revision.

    Each entry is a subject's answer from ``token``'s revision on; NO_PERMISSION
    means it holds the permission no more. With ``reset`` the entries are the
    whole audience (ListSubjects at that revision) and replace all before them.
    """

    token: str
    subjects: tuple[FoundSubject, ...]
    reset: bool = False


class Audience:
    """The subjects holding a permission, folded from a WatchPermission stream's changes.

    ``answer_for`` then says of any subject what a fresh ListSubjects at the
    last change's revision would: a subject that lost the permission while a
    wildcard grants its type becomes one of the wildcard's exclusions.
    """

    def __init__(self) -> None:
        self._entries: dict[SubjectRef, FoundSubject] = {}
        self.token = ""
        """The revision the audience is at (the last change applied)."""

    @property
    def subjects(self) -> tuple[FoundSubject, ...]:
        """The entries: subjects by name, and any wildcard with its exclusions."""
        return tuple(self._entries.values())

    def apply(self, change: AudienceChange) -> None:
        """Fold one change in (changes must come in the stream's order)."""
        if change.reset:
            self._entries.clear()
        for found in change.subjects:
            subject = found.subject
            wildcard = self._entries.get(SubjectRef(subject.type, WILDCARD))
            if found.permissionship is not Permissionship.NO_PERMISSION:
                self._entries[subject] = found
                if wildcard is not None:
                    self._exclude(wildcard, subject, keep=False)
            else:
                self._entries.pop(subject, None)
                if wildcard is not None and subject.id != WILDCARD and subject.relation is None:
                    self._exclude(wildcard, subject, keep=True)
        self.token = change.token

    def _exclude(self, wildcard: FoundSubject, subject: SubjectRef, *, keep: bool) -> None:
        """Make ``subject`` one of the wildcard's certain exclusions (``keep``) or none of them."""
        others = tuple(e for e in wildcard.excluded if e.subject != subject)
        excluded = (*others, ExcludedSubject(subject)) if keep else others
        self._entries[wildcard.subject] = replace(wildcard, excluded=excluded)

    def answer_for(self, subject: SubjectRef) -> tuple[Permissionship, tuple[str, ...]]:
        """What the audience says of one subject (``answer_for``)."""
        return answer_for(self._entries.values(), subject)


class ExpandKind(Enum):
    """What an expand node stands for."""

    UNION = "union"
    INTERSECTION = "intersection"
    EXCLUSION = "exclusion"
    LEAF = "leaf"


@dataclass(frozen=True, slots=True)
class ExpandNode:
    """One node of an expand tree: an operation over children, or a leaf of relationships.

    ``target`` names the userset the node computes (``document:1#view``), or
    an arrow (``document:1#parent->view``) for the union an arrow makes.
    """

    kind: ExpandKind
    target: str
    children: tuple[ExpandNode, ...] = ()
    relationships: tuple[Relationship, ...] = ()
