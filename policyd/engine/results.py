"""Package results holds decision values and the three-valued logic that combines them.

On the hot path a partial decision is a plain Python value, chosen for speed
(benchmarks/engine_bench.py): ``True`` (granted), ``False`` (denied), or a
non-empty ``frozenset`` of caveat parameter names whose values are still
needed (conditional). Union is Kleene OR, intersection AND, exclusion AND NOT.

An error met while deciding (a caveat that fails on its context, a cycle
under an exclusion, the depth limit) is a fourth value, ``Failure``, not an
exception, so that combining never depends on the order operands run in: a
grant settles a union and a denial settles an intersection whatever a
sibling failed with, and an error surfaces only when no order-free answer
exists. OpenFGA's check does the same for unions (internal/graph/check.go,
``union``: an erroring branch is held while the others run, and an allowed
one wins); here it holds for every operator, by construction.
"""

from __future__ import annotations

from typing import TypeAlias

from policyd.decisions import Permissionship
from policyd.errors import PolicydError


class Failure:
    """An error that decided nothing yet: it surfaces only if no operand settles the answer."""

    __slots__ = ("error",)

    def __init__(self, error: PolicydError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Failure({self.error!r})"


Partial: TypeAlias = bool | frozenset[str] | Failure
"""A decision being computed: True, False, the missing caveat parameters, or an error."""


def _failed(a: Partial, b: Partial) -> Partial | None:
    """The failure that two undecided operands combine to, or None when neither failed.

    Of two failures the one with the smaller (code, message) wins, so the error
    reported never depends on which operand ran first.
    """
    if isinstance(a, Failure):
        if isinstance(b, Failure):
            return min(a, b, key=lambda f: (f.error.code, f.error.message))
        return a
    if isinstance(b, Failure):
        return b
    return None


def any_of(a: Partial, b: Partial) -> Partial:
    """Kleene OR: granted if either is; conditional if one is and the other is not denied."""
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    failed = _failed(a, b)
    if failed is not None:
        return failed
    assert isinstance(a, frozenset) and isinstance(b, frozenset)
    return a | b


def all_of(a: Partial, b: Partial) -> Partial:
    """Kleene AND: denied if either is; conditional unless both are granted."""
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    failed = _failed(a, b)
    if failed is not None:
        return failed
    assert isinstance(a, frozenset) and isinstance(b, frozenset)
    return a | b


def negate(a: Partial) -> Partial:
    """Kleene NOT: a conditional stays conditional on the same parameters, a failure a failure."""
    if a is True:
        return False
    if a is False:
        return True
    return a


def settled(value: Partial) -> bool | frozenset[str]:
    """The final value of a decision: raises the error of a failure nothing settled."""
    if isinstance(value, Failure):
        raise value.error
    return value


def permissionship(value: Partial) -> Permissionship:
    """The public answer for a decision; raises the error of a failure."""
    if value is True:
        return Permissionship.HAS_PERMISSION
    if value is False:
        return Permissionship.NO_PERMISSION
    settled(value)
    return Permissionship.CONDITIONAL


def missing_of(value: Partial) -> tuple[str, ...]:
    """The sorted missing caveat parameters of a conditional decision, else ()."""
    return tuple(sorted(value)) if isinstance(value, frozenset) else ()
