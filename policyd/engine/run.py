"""Package run is the contract between compiled plans and the runs that evaluate them.

A plan (engine/plan.py) is a closure per (type, member) that decides one
member for one subject. It reads relationships through ``run.reader``, asks
for other members through ``run.check`` (where the memo, cycles and depth
are kept), turns each relationship found into a decision with
``run.grant`` (its caveat, its expiry) and marks the steps Explain shows with
``run.step``. ``CheckRun`` and ``TracingRun`` (engine/check.py) implement
this protocol; plans depend on it, never on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias

from policyd.engine.group_closure import ClosureSource
from policyd.engine.index import Edge
from policyd.engine.reader import GraphReader
from policyd.engine.results import Partial

PlanFn: TypeAlias = "Callable[[Run, str, int], Partial]"
"""Evaluates one member for the run's subject on resource ``rid`` at dispatch ``depth``."""


class Run(Protocol):
    """One subject, one revision, one caveat context: what every plan evaluates against."""

    reader: GraphReader
    """Relationship reads at the run's revision."""
    closures: ClosureSource | None
    """Group closures that answer nested membership in one lookup, when reading the index."""
    subject_key: tuple[str, str, str]
    """The subject as (type, id, relation or '')."""
    tracing: bool
    """True while Explain records the steps: plans then keep the written order."""
    negations: int
    """How many subtracted sides of exclusions the evaluation is inside; plans raise it."""

    def check(self, type_name: str, rid: str, member: str, depth: int) -> Partial:
        """Decide ``type_name:rid#member`` for the subject: memoised, cycle- and depth-safe."""
        ...

    def step(self, label: str, evaluate: PlanFn, rid: str, depth: int) -> Partial:
        """Evaluate part of a rewrite; a tracing run records it as an Explain step."""
        ...

    def grant(self, value: bool | Edge) -> Partial:
        """What a found relationship contributes: True, or its caveat's answer in the context."""
        ...
