"""What the client's streaming and policy calls answer with, beside the shared decision values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from policyd.errors import (
    Diagnostic,
)
from policyd.relationship import (
    Relationship,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Listed(Generic[T]):
    """One answer of a streamed listing, the token of its revision, and where to resume.

    ``after_cursor`` is set on the last answer when ``limit`` cut the listing.
    """

    found: T
    token: str
    after_cursor: str = ""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A relationship from ReadRelationships and the cursor to continue after it."""

    relationship: Relationship
    token: str
    after_cursor: str


@dataclass(frozen=True, slots=True)
class Change:
    """The changes of one revision from Watch; resume with ``token``.

    Each update is (kind, relationship) with kind touch, delete or policy
    (policy changes carry no relationship).
    """

    token: str
    updates: tuple[tuple[str, Relationship | None], ...]


@dataclass(frozen=True, slots=True)
class PolicyValidation:
    """ValidatePolicy's answer: valid when WritePolicy would accept the policy now."""

    valid: bool
    diagnostics: tuple[Diagnostic, ...]
    blockers: tuple[str, ...] = ()
