"""Package check decides whether one subject holds a permission: caveats, memo, depth limit.

A ``CheckRun`` serves every check for one subject at one revision with one
caveat context: it dispatches to the plan's closures, memoises each
(type, id, member) it settles, breaks cycles in the data, and refuses to
recurse deeper than the configured limit. ``TracingRun`` records what it did,
for Explain.

Cycles. A member met again while it is still being evaluated is cut: on a
path of unions, intersections and arrows (all monotone) the cut counts as
"not granted", which yields the least fixpoint, the one answer every
evaluation order agrees on (nested groups that contain each other). A cycle
with a negative step, one member depending on the next through the
subtracted side of an exclusion, has no such answer (``viewer = direct -
restricted`` with ``restricted`` holding ``viewer`` would grant exactly when
it does not), so the cut is a ``Failure`` that fails the decision closed
unless another operand settles it without the cycle. These are the answers
of the well-founded model (tests/engine/test_fail_closed.py checks them
against one): true and false where it decides, an error where it leaves a
member undefined. SpiceDB ends every such cycle in its max-depth error; we
keep the fixpoint answer for monotone cycles and name the cycle otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import islice
from typing import Any

from policyd.caveats import CaveatOutcome, merge_contexts
from policyd.decisions import Explanation
from policyd.engine.group_closure import ClosureSource
from policyd.engine.index import Edge
from policyd.engine.plan import Plan
from policyd.engine.reader import GraphReader, TracedEdge, TracingReader
from policyd.engine.results import Failure, Partial, missing_of, permissionship
from policyd.engine.run import PlanFn
from policyd.errors import CaveatError, CycleUnderExclusionError, MaxDepthExceededError
from policyd.relationship import SubjectRef

_NO_CUT = 1 << 30


class CheckRun:
    """Evaluates members for one subject, as the ``Run`` that plans expect.

    Memo and cycle state live as long as the run.
    """

    tracing = False
    """True in TracingRun: plans then route every step through ``check`` to record it."""

    def __init__(
        self,
        plan: Plan,
        reader: GraphReader,
        subject: SubjectRef,
        context: Mapping[str, Any],
        max_depth: int,
        closures: ClosureSource | None = None,
    ) -> None:
        self.plan = plan
        self.reader = reader
        self.closures = closures
        self.subject_key = (subject.type, subject.id, subject.relation or "")
        self.context = context
        self.max_depth = max_depth
        self.memo: dict[tuple[str, str, str], Partial] = {}
        self.valid_until = math.inf
        """The earliest expiry of any relationship the answers so far relied on."""
        self.negations = 0
        """How many subtracted sides of exclusions the evaluation is inside now."""
        self._open: dict[tuple[str, str, str], tuple[int, int]] = {}
        """Members being evaluated: their position on the path and ``negations`` when opened."""
        self._lowest_cut = _NO_CUT

    def check(self, type_name: str, rid: str, member: str, depth: int) -> Partial:
        """Decide whether the subject holds ``type_name:rid#member``.

        A member that is already being evaluated further up (a cycle in the
        data) counts as not granting on this path, or as a failure when the
        cycle runs through a subtracted side (see the module docstring);
        results that leaned on such a cut, or on the depth limit, are not
        memoised, so the memo never holds an answer that depends on the path.
        """
        key = (type_name, rid, member)
        memo = self.memo.get(key)
        if memo is not None:
            return memo
        if key == self.subject_key:
            return True
        opened = self._open.get(key)
        if opened is not None:
            position, negations = opened
            self._lowest_cut = min(self._lowest_cut, position)
            if self.negations != negations and self._negative_cycle(position):
                return Failure(self._cycle_error(position, key))
            return False
        if depth > self.max_depth:
            self._lowest_cut = 0  # the failure depends on the path's length
            return Failure(
                MaxDepthExceededError(
                    f"checking {type_name}:{rid}#{member} needs more than {self.max_depth} "
                    "levels of nesting; raise max depth or look for a cycle in the data"
                )
            )
        evaluate = self.plan.members.get((type_name, member))
        if evaluate is None:
            return False
        here = len(self._open)
        self._open[key] = (here, self.negations)
        saved, self._lowest_cut = self._lowest_cut, _NO_CUT
        try:
            result = evaluate(self, rid, depth)
        except RecursionError:
            if depth:
                raise
            # A max depth above what Python's stack holds must still end in a clear error.
            raise MaxDepthExceededError(
                f"checking {type_name}:{rid}#{member} nests deeper than Python's stack allows "
                f"before reaching max depth {self.max_depth}; lower max depth or look for "
                "a very long chain in the data"
            ) from None
        finally:
            del self._open[key]
        cut = self._lowest_cut
        if cut >= here:
            self.memo[key] = result
            self._lowest_cut = saved
        else:
            self._lowest_cut = min(saved, cut)
        return result

    def _negative_cycle(self, position: int) -> bool:
        """Whether the cycle back to the member opened at ``position`` has a negative step.

        A step from one member to the next on the path is negative when an odd
        number of subtracted sides lie between them (each member's count of
        subtracted sides when it was opened, then the count now, tells). A
        cycle of positive steps, even one under two subtractions at once
        (``a - (a - b)``), is monotone: the cut's "not granted" is its least
        fixpoint, as for nested groups.
        """
        parity = self.negations % 2
        return any(
            negations % 2 != parity for _, negations in islice(self._open.values(), position, None)
        )

    def _cycle_error(self, position: int, key: tuple[str, str, str]) -> CycleUnderExclusionError:
        """The error for a cycle back to the member opened at ``position``, naming the path."""
        path = [*list(self._open)[position:], key]
        names = " -> ".join(f"{t}:{i}#{m}" for t, i, m in path)
        return CycleUnderExclusionError(
            f"{names}: {path[0][0]}:{path[0][1]}#{path[0][2]} depends on itself through the "
            "subtracted side of an exclusion, which has no consistent answer; the decision "
            "fails closed until a relationship on this cycle is removed"
        )

    def step(self, label: str, evaluate: PlanFn, rid: str, depth: int) -> Partial:
        """Evaluate part of a rewrite; TracingRun records it as an Explain step."""
        return evaluate(self, rid, depth)

    def grant(self, value: bool | Edge) -> Partial:
        """What a found relationship contributes: True, or its caveat's answer under the context."""
        if value is True:
            return True
        assert isinstance(value, Edge)
        expires = value.expires_at
        if expires is not None and expires < self.valid_until:
            self.valid_until = expires
        name = value.caveat_name
        if name is None:
            return True
        compiled = self.plan.caveats[name]
        try:
            result = compiled.evaluate(merge_contexts(value.context, self.context))
        except CaveatError as e:
            return Failure(e)
        if result.outcome is CaveatOutcome.TRUE:
            return True
        if result.outcome is CaveatOutcome.FALSE:
            return False
        return frozenset(result.missing)


class _Step:
    """A mutable explanation node while tracing."""

    __slots__ = ("children", "note", "result", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.children: list[_Step] = []
        self.result: Partial = False
        self.note = ""

    def freeze(self) -> Explanation:
        result = self.result
        if isinstance(result, Failure):
            self.note = f"failed: {result.error}"
            result = False
        return Explanation(
            self.what,
            permissionship(result),
            tuple(c.freeze() for c in self.children),
            self.note,
            missing_of(result),
        )


class TracingRun(CheckRun):
    """A CheckRun that records each member it evaluates and each relationship it relies on."""

    tracing = True

    def __init__(
        self,
        plan: Plan,
        reader: GraphReader,
        subject: SubjectRef,
        context: Mapping[str, Any],
        max_depth: int,
    ) -> None:
        super().__init__(plan, TracingReader(reader), subject, context, max_depth)
        self.root = _Step("")
        self._stack = [self.root]

    def check(self, type_name: str, rid: str, member: str, depth: int) -> Partial:
        """Evaluate as CheckRun does, recording a step for the member."""
        step = _Step(f"{type_name}:{rid}#{member}")
        key = (type_name, rid, member)
        if key in self.memo:
            step.note = "already evaluated above"
        elif key in self._open:
            step.note = "cycle: already being evaluated"
        elif self.plan.members.get((type_name, member)) is None:
            step.note = f"type '{type_name}' has no '{member}'"
        self._stack[-1].children.append(step)
        self._stack.append(step)
        try:
            step.result = super().check(type_name, rid, member, depth)
        finally:
            self._stack.pop()
        return step.result

    def step(self, label: str, evaluate: PlanFn, rid: str, depth: int) -> Partial:
        """Evaluate as CheckRun does, recording the step; an empty one says so."""
        step = _Step(label)
        self._stack[-1].children.append(step)
        self._stack.append(step)
        try:
            step.result = evaluate(self, rid, depth)
        finally:
            self._stack.pop()
        if not step.children:
            step.note = "no relationships to follow"
        return step.result

    def grant(self, value: bool | Edge) -> Partial:
        """Evaluate as CheckRun does, recording the relationship that was found."""
        result = super().grant(value)
        assert isinstance(value, TracedEdge), "a tracing run reads through a TracingReader"
        relationship = value.relationship()
        step = _Step(f"relationship {relationship}")
        step.result = result
        if relationship.caveat_name is not None:
            missing = missing_of(result)
            step.note = (
                f"caveat {relationship.caveat_name} needs {', '.join(missing)}"
                if missing
                else f"caveat {relationship.caveat_name} is {str(result is True).lower()}"
            )
        self._stack[-1].children.append(step)
        return result

    def explanation(self) -> Explanation:
        """The recorded tree under the top-level check."""
        (top,) = self.root.children
        return top.freeze()
