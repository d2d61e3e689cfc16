"""Package engine answers Check, BatchCheck, ListObjects, ListSubjects and Expand.

It plans each (type, permission) once per policy revision and reads
relationships only through the Store protocol.

The life of a Check, ``engine.check(doc:1, "view", user:ann)``:

1. ``Revisions.reader`` (revisions.py) turns the consistency into a revision
   and a ``GraphReader`` (reader.py): the in-memory index (index.py) if it is
   fresh enough, else the store at that snapshot.
2. ``PolicyCache.at`` (policies.py) gives the policy in force there, compiled
   once into a ``Plan`` (plan.py): one closure per (type, member).
3. ``Engine._validate`` refuses unknown types, members and wildcard subjects.
4. Without caveat context, ``DecisionCache`` (cache.py) may already know the
   answer at this revision.
5. Otherwise a ``CheckRun`` (check.py) calls the closure for ``doc#view``;
   closures read relationships, ask ``run.check`` for other members (memo,
   cycles and depth live there), ``run.grant`` each relationship found (its
   caveat and expiry), and answer nested groups from ``group_closure.py``.
6. Values combine by Kleene logic (results.py): granted, denied, conditional
   on missing caveat parameters, or a failure that no operand settled,
   which is raised; the answer carries the revision's consistency token.
"""

from policyd.engine.engine import (
    Engine,
    EngineStats,
    ExpandResult,
    ObjectsPage,
    PolicyChecked,
    PolicyWritten,
    SubjectsResult,
)
from policyd.engine.explain import format_explanation

__all__ = [
    "Engine",
    "EngineStats",
    "ExpandResult",
    "ObjectsPage",
    "PolicyChecked",
    "PolicyWritten",
    "SubjectsResult",
    "format_explanation",
]
