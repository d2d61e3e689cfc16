"""Engine tests' vocabulary: relationships and questions written as SpiceDB text.

``check(engine, "doc:1#view@user:alice")`` asks at the newest revision; the
``MakeEngine`` protocol is the type of the ``make_engine`` fixture (conftest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from policyd.consistency import Consistency
from policyd.decisions import CheckRequest, CheckResult
from policyd.engine import Engine
from policyd.relationship import (
    ObjectRef,
    Relationship,
    SubjectRef,
    parse_relationship,
    parse_subject,
)

FRESH = Consistency.fully_consistent()


def rel(text: str) -> Relationship:
    """A relationship from SpiceDB text, caveat and expiration included."""
    return parse_relationship(text)


def query(text: str) -> tuple[ObjectRef, str, SubjectRef]:
    """``resource#permission@subject`` split into what Check takes."""
    parsed = parse_relationship(text)
    return parsed.resource, parsed.relation, parsed.subject


def subject(text: str) -> SubjectRef:
    """``type:id`` or ``type:id#relation``."""
    return parse_subject(text)


def request(text: str, context: Mapping[str, Any] | None = None) -> CheckRequest:
    """A BatchCheck item from ``resource#permission@subject``."""
    resource, permission, subject_ref = query(text)
    return CheckRequest(resource, permission, subject_ref, dict(context or {}))


def check(engine: Engine, text: str, context: Mapping[str, Any] | None = None) -> CheckResult:
    """Check ``resource#permission@subject`` at the newest revision."""
    resource, permission, subject = query(text)
    return engine.check(resource, permission, subject, context=context, consistency=FRESH)


class MakeEngine(Protocol):
    def __call__(
        self, policy: str, relationships: list[str] | tuple[str, ...] = (), **kwargs: Any
    ) -> Engine: ...
