"""The paths through which expected subjects hold, for expected-relations blocks.

An expected-relations line ``[subject] is <resource#relation>/…`` names the
subject and the paths it is found through, and both are checked, as
``zed validate`` does: a path is the ``resource#relation`` whose stored
relationship names the subject directly (for a member of a nested group, the
group's ``group:eng#member``, not the document's relation), found by expanding
the permission recursively; a subject in both operands of ``&`` has the paths
of both, a subject left by ``-`` has those of its base (and of the subtracted
side too when that side only removes it under a caveat). The paths must equal
the computed ones exactly, in any order (SpiceDB's pkg/development/validation.go
compares the sorted lists; internal/developmentmembership tracks the paths).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policyd.consistency import Consistency
from policyd.decisions import ExpandKind, ExpandNode
from policyd.engine import Engine
from policyd.relationship import (
    WILDCARD,
    ObjectRef,
    SubjectRef,
)


@dataclass(frozen=True, slots=True)
class Found:
    """A subject found by expansion: its paths, and whether it holds only under a caveat.

    A wildcard also carries the ids it leaves out.
    """

    paths: frozenset[str]
    conditional: bool = False
    excluded: frozenset[str] = frozenset()


Subjects = dict[SubjectRef, Found]
"""The subjects a userset holds, as expansion found them."""


class Membership:
    """SpiceDB's developer membership set, kept to what the paths of subjects need.

    It expands a userset recursively (userset subjects are expanded in turn) and
    combines the subjects found as internal/developmentmembership does: ``+``
    unites paths, ``&`` keeps a subject on both sides (or on one side and under an
    unconditional wildcard on the other) with the paths of its sides, ``-`` keeps
    the base's subjects that the other side does not remove outright. Which
    subjects hold is ListSubjects' answer; this only says through which paths.
    """

    def __init__(self, engine: Engine, consistency: Consistency) -> None:
        self.engine = engine
        self.consistency = consistency
        self.expanding: set[str] = set()

    def userset(self, resource: ObjectRef, relation: str) -> Subjects:
        """The subjects of ``resource#relation``; a userset met again inside itself adds none."""
        key = f"{resource}#{relation}"
        if key in self.expanding:
            return {}
        self.expanding.add(key)
        try:
            return self.node(
                self.engine.expand(resource, relation, consistency=self.consistency).tree
            )
        finally:
            self.expanding.discard(key)

    def node(self, node: ExpandNode) -> Subjects:
        """The subjects of one Expand node, its children combined by its operator."""
        if node.kind is ExpandKind.LEAF:
            return self.leaf(node)
        found = [self.node(child) for child in node.children]
        if node.kind is ExpandKind.UNION or not found:
            united: Subjects = {}
            for one in found:
                united = _union(united, one)
            return united
        if node.kind is ExpandKind.INTERSECTION:
            common = found[0]
            for one in found[1:]:
                common = _intersect(common, one)
            return common
        return _exclude(found[0], found[1])

    def leaf(self, node: ExpandNode) -> Subjects:
        """The subjects a leaf's relationships name, userset subjects expanded in turn."""
        found: Subjects = {}
        for relationship in node.relationships:
            subject = relationship.subject
            conditional = relationship.caveat_name is not None
            found = _union(found, {subject: Found(frozenset({node.target}), conditional)})
            if subject.relation is not None:
                inner = self.userset(subject.object, subject.relation)
                if conditional:
                    inner = {k: replace(f, conditional=True) for k, f in inner.items()}
                found = _union(found, inner)
        return found


def _wildcard_of(subject: SubjectRef) -> SubjectRef | None:
    """``type:*`` for a plain subject ``type:id``; None for wildcards and usersets."""
    if subject.relation is None and subject.id != WILDCARD:
        return SubjectRef(subject.type, WILDCARD)
    return None


def _wildcard_over(found: Subjects, subject: SubjectRef) -> Found | None:
    """The wildcard of ``subject``'s type among ``found``, if any, for a plain subject."""
    wildcard = _wildcard_of(subject)
    return found.get(wildcard) if wildcard is not None else None


def _union(a: Subjects, b: Subjects) -> Subjects:
    out = dict(a)
    for key, found in b.items():
        had = out.get(key)
        out[key] = (
            found
            if had is None
            else Found(
                had.paths | found.paths,
                had.conditional and found.conditional,
                had.excluded & found.excluded,
            )
        )
    for key, found in list(out.items()):  # a subject found outright is no longer left out
        if key.id == WILDCARD and found.excluded:
            back = {k.id for k, f in out.items() if _wildcard_of(k) == key and not f.conditional}
            out[key] = replace(found, excluded=found.excluded - back)
    return out


def _intersect(a: Subjects, b: Subjects) -> Subjects:
    out: Subjects = {}
    for this, that in ((a, b), (b, a)):
        for key, found in this.items():
            if key in out:
                continue
            other = that.get(key)
            wildcard = _wildcard_over(that, key) if other is None else None
            if other is not None:
                out[key] = Found(
                    found.paths | other.paths,
                    found.conditional or other.conditional,
                    found.excluded | other.excluded,
                )
            elif wildcard is not None and key.id not in wildcard.excluded:
                extra = wildcard.paths if wildcard.conditional else frozenset()
                out[key] = Found(found.paths | extra, found.conditional or wildcard.conditional)
    return out


def _exclude(base: Subjects, subtract: Subjects) -> Subjects:
    out: Subjects = {}
    for key, found in base.items():
        other = subtract.get(key)
        if key.id == WILDCARD:
            if other is not None and not other.conditional:
                continue
            removed = {
                k.id for k, f in subtract.items() if _wildcard_of(k) == key and not f.conditional
            }
            out[key] = Found(
                found.paths, found.conditional or other is not None, found.excluded | removed
            )
        elif other is not None:
            if other.conditional:  # removed only under a caveat: both sides are its sources
                out[key] = Found(found.paths | other.paths, True)
        else:
            wildcard = _wildcard_over(subtract, key)
            if wildcard is None or key.id in wildcard.excluded:
                out[key] = found
            elif wildcard.conditional:
                out[key] = replace(found, conditional=True)
    return out
