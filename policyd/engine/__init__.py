"""Package engine answers Check, BatchCheck, ListObjects, ListSubjects and Expand.

It plans each (type, permission) once per policy revision and reads
relationships only through the Store protocol.
"""

from policyd.engine.consistency import Consistency, ConsistencyMode
from policyd.engine.engine import (
    CheckRequest,
    Engine,
    EngineStats,
    ExpandResult,
    FoundObject,
    ObjectsPage,
    PolicyWritten,
    SubjectsResult,
)
from policyd.engine.explain import format_explanation
from policyd.engine.results import CheckResult, Explanation, Permissionship

__all__ = [
    "CheckRequest",
    "CheckResult",
    "Consistency",
    "ConsistencyMode",
    "Engine",
    "EngineStats",
    "ExpandResult",
    "Explanation",
    "FoundObject",
    "ObjectsPage",
    "Permissionship",
    "PolicyWritten",
    "SubjectsResult",
    "format_explanation",
]
