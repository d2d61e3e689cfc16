"""Package results holds decision values and the three-valued logic that combines them.

On the hot path a partial decision is a plain Python value, chosen for speed
(benchmarks/engine_bench.py): ``True`` (granted), ``False`` (denied), or a
non-empty ``frozenset`` of caveat parameter names whose values are still
needed (conditional). Union is Kleene OR, intersection AND, exclusion AND NOT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from policyd.relationship import ObjectRef, SubjectRef

Partial: TypeAlias = bool | frozenset[str]
"""A decision while it is being computed: True, False, or the missing caveat parameters."""


def any_of(a: Partial, b: Partial) -> Partial:
    """Kleene OR: granted if either is; conditional if one is and the other is not denied."""
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return a | b


def all_of(a: Partial, b: Partial) -> Partial:
    """Kleene AND: denied if either is; conditional unless both are granted."""
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return a | b


def negate(a: Partial) -> Partial:
    """Kleene NOT: a conditional stays conditional on the same parameters."""
    if a is True:
        return False
    if a is False:
        return True
    return a


class Permissionship(Enum):
    """The answer to a Check."""

    HAS_PERMISSION = "has_permission"
    NO_PERMISSION = "no_permission"
    CONDITIONAL = "conditional"


def permissionship(value: Partial) -> Permissionship:
    """The public answer for a partial decision."""
    if value is True:
        return Permissionship.HAS_PERMISSION
    if value is False:
        return Permissionship.NO_PERMISSION
    return Permissionship.CONDITIONAL


def missing_of(value: Partial) -> tuple[str, ...]:
    """The sorted missing caveat parameters of a conditional decision, else ()."""
    return tuple(sorted(value)) if isinstance(value, frozenset) else ()


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a decision came out as it did: one evaluated step and the steps beneath it.

    ``what`` names the step (``document:1#view``, ``union``, ``viewer -> view``,
    a relationship); ``result`` is its answer; ``note`` adds detail such as a
    caveat's outcome or why a branch was skipped.
    """

    what: str
    result: Permissionship
    children: tuple[Explanation, ...] = ()
    note: str = ""
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one Check, the revision it was evaluated at and its consistency token."""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    permissionship: Permissionship
    revision: int
    token: str
    missing: tuple[str, ...] = ()
    explanation: Explanation | None = field(default=None, compare=False)

    @property
    def allowed(self) -> bool:
        """True only for HAS_PERMISSION."""
        return self.permissionship is Permissionship.HAS_PERMISSION
