"""Package policies keeps the compiled policy in force at each revision, compiled once.

A policy changes rarely and is read on every request, so each stored policy
is compiled (plans, the reverse index for lookups, group closures) the first
time a request needs it and then kept with the range of revisions it is
known to be in force for. A request at a revision inside that range costs
a comparison; one past its end asks the store once, then extends the range.
"""

from __future__ import annotations

from dataclasses import dataclass

from policyd.engine.group_closure import Closures
from policyd.engine.plan import Plan, compile_plan
from policyd.engine.reachability import ReverseIndex, build_reverse_index
from policyd.errors import NotFoundError
from policyd.store.base import Revision, Store


@dataclass(slots=True)
class CompiledPolicy:
    """A stored policy made ready to evaluate, and the last revision it is known to hold at."""

    plan: Plan
    reverse: ReverseIndex
    verified_to: Revision


class PolicyCache:
    """The compiled policy at any revision; safe to read from many threads.

    Races only compile a policy twice; both results are equal.
    """

    def __init__(self, store: Store, closures: Closures | None) -> None:
        self._store = store
        self._closures = closures
        self._compiled: dict[Revision, CompiledPolicy] = {}
        self._last: tuple[Revision, CompiledPolicy] | None = None

    def at(self, revision: Revision) -> CompiledPolicy:
        """The compiled policy in force at ``revision``.

        Raises:
            NotFoundError: no policy had been written by then.
        """
        last = self._last
        if last is not None and last[0] == revision:
            return last[1]
        compiled = self._find(revision)
        self._last = (revision, compiled)
        return compiled

    def extend(self, known: Revision, upto: Revision) -> None:
        """No policy was written in (known, upto]: the one in force at ``known`` still is."""
        for policy_revision, compiled in self._compiled.items():
            if policy_revision <= known <= compiled.verified_to:
                compiled.verified_to = max(compiled.verified_to, upto)

    def _find(self, revision: Revision) -> CompiledPolicy:
        for policy_revision, compiled in self._compiled.items():
            if policy_revision <= revision <= compiled.verified_to:
                return compiled
        stored = self._store.snapshot(revision).read_policy()
        if stored is None:
            raise NotFoundError("no policy has been written yet; write one first", field="policy")
        known = self._compiled.get(stored.revision)
        if known is None:
            plan = compile_plan(stored.schema)
            known = CompiledPolicy(plan, build_reverse_index(stored.schema), revision)
            self._compiled[stored.revision] = known
            if self._closures is not None:
                # Build group closures now, not inside the first request that needs one:
                # building scans the whole index (seconds at 10M relationships).
                for type_name, relation in plan.closable:
                    self._closures.get(type_name, relation)
        known.verified_to = max(known.verified_to, revision)
        return known
