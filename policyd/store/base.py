"""Package store.base defines the Store protocol every backend implements, and the values it passes.

The engine talks to storage only through ``Store``. One contract, three
backends (``MemoryStore``, ``SqliteStore``, ``PostgresStore``), one test suite.

Revisions
    Every successful write (relationship batch, delete by filter, import,
    policy) commits atomically and yields a new revision: an int, strictly
    increasing, assigned in commit order. An empty store is at revision 0. A
    reader who can see revision R sees every write at or below R and nothing
    above it.

Snapshots (MVCC)
    Rows record the revision that created them and the one that deleted them.
    A read "at revision R" sees exactly the relationships live at R. Reads take
    ``revision=None`` to mean the head revision at the time of the call. A read
    at a revision above the head, or below the oldest revision the store still
    keeps (see ``gc``), raises RevisionUnavailableError.

Expiry
    A relationship whose ``expires_at`` is at or before the store clock's "now"
    is invisible to every read, at every revision, from that moment on; writes
    treat it as absent (CREATE succeeds over it, TOUCH replaces it, DELETE and
    delete-by-filter ignore it); ``gc`` removes it physically.

Ordering and paging
    Relationship reads return relationships in key order: resource type,
    resource id, relation, subject type, subject id, subject relation ('' for
    none), compared as code points (SQLite's BINARY and PostgreSQL's "C"
    collation). A page holds at most ``limit`` relationships and a cursor for
    the next page, or ``None`` on the last page; the cursor pins the revision
    so every page of one listing comes from the same snapshot.

Garbage collection and holds
    ``gc(window)`` removes rows deleted at a revision committed more than
    ``window`` ago (default 24 h), and expired rows. It never removes a row a
    held revision can see: a reader that needs revision R for a while calls
    ``hold(R)`` and keeps the returned ``RevisionHold`` until it is done. Holds
    live in the store itself (a table for SQL backends), so they protect
    readers in every process sharing the database; each has a lease (``ttl``)
    so a crashed reader cannot block collection for ever. After a collection
    the store's oldest readable revision moves up to the collection point, and
    reads or change-log reads below it raise RevisionUnavailableError.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeAlias

from policyd.errors import InvalidRequestError
from policyd.relationship import (
    OBJECT_ID,
    RELATION_NAME,
    TYPE_NAME,
    WILDCARD,
    Relationship,
    RelationshipKey,
    RelationshipUpdate,
)
from policyd.schema.ir import Schema
from policyd.tokens import TokenCodec

Revision: TypeAlias = int
"""A store revision: 0 for an empty store, then +1 per committed write, in commit order."""

ExportRow: TypeAlias = tuple[str, str, str, str, str, str, str | None, str | None, int | None]
"""A live relationship as raw columns: the six key parts (subject relation '' for none),
caveat name, caveat context as JSON text, and expiry in microseconds since the epoch."""

Clock: TypeAlias = Callable[[], float]
"""Seconds since the epoch, like ``time.time``; stores take one so tests can move time."""

DEFAULT_GC_WINDOW = timedelta(hours=24)
DEFAULT_HOLD_TTL = timedelta(hours=1)
DEFAULT_PAGE_SIZE = 1000
DEFAULT_CHANGES_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class RelationshipFilter:
    """Selects relationships; every field left ``None`` matches anything.

    ``subject_relation`` is ``None`` for any subject relation and ``""`` for
    subjects without one (``user:alice`` but not ``group:eng#member``).
    """

    resource_type: str | None = None
    resource_id: str | None = None
    relation: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    subject_relation: str | None = None

    def is_empty(self) -> bool:
        """True when the filter matches every relationship."""
        return all(v is None for v in self.values())

    def validate(self, field: str = "filter") -> None:
        """Raise InvalidRequestError naming ``field.<part>`` for a malformed value.

        A value that no relationship could hold would match nothing, so a delete
        by it would silently delete nothing; it is refused instead. A subject id
        may be ``*`` (wildcard relationships), a subject relation ``""`` (none).
        """
        parts = (
            ("resource_type", self.resource_type, TYPE_NAME),
            ("resource_id", self.resource_id, OBJECT_ID),
            ("relation", self.relation, RELATION_NAME),
            ("subject_type", self.subject_type, TYPE_NAME),
            ("subject_id", None if self.subject_id == WILDCARD else self.subject_id, OBJECT_ID),
            ("subject_relation", self.subject_relation or None, RELATION_NAME),
        )
        for name, value, pattern in parts:
            if value is not None and not pattern.fullmatch(value):
                what = name.replace("_", " ")
                raise InvalidRequestError(f"invalid {what} {value!r}", field=f"{field}.{name}")

    def values(self) -> tuple[str | None, ...]:
        """The six fields in key order."""
        return (
            self.resource_type,
            self.resource_id,
            self.relation,
            self.subject_type,
            self.subject_id,
            self.subject_relation,
        )

    def matches(self, relationship: Relationship) -> bool:
        """True when ``relationship`` satisfies every field that is set."""
        return all(
            want is None or want == have
            for want, have in zip(self.values(), relationship.key, strict=True)
        )

    def __str__(self) -> str:
        names = (
            "resource_type",
            "resource_id",
            "relation",
            "subject_type",
            "subject_id",
            "subject_relation",
        )
        parts = [f"{n}={v!r}" for n, v in zip(names, self.values(), strict=True) if v is not None]
        return "{" + ", ".join(parts) + "}"


class PreconditionKind(Enum):
    """Whether a precondition needs a matching relationship or the absence of one."""

    MUST_MATCH = "must_match"
    MUST_NOT_MATCH = "must_not_match"


@dataclass(frozen=True, slots=True)
class Precondition:
    """A condition on the head revision, checked inside the write transaction."""

    kind: PreconditionKind
    filter: RelationshipFilter

    @classmethod
    def must_match(cls, relationship_filter: RelationshipFilter) -> Precondition:
        """Require at least one live relationship matching the filter."""
        return cls(PreconditionKind.MUST_MATCH, relationship_filter)

    @classmethod
    def must_not_match(cls, relationship_filter: RelationshipFilter) -> Precondition:
        """Require that no live relationship matches the filter."""
        return cls(PreconditionKind.MUST_NOT_MATCH, relationship_filter)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.filter}"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page of a listing starts: after ``after`` at ``revision``."""

    revision: Revision
    after: RelationshipKey

    def encode(self, tokens: TokenCodec) -> str:
        """The opaque string form clients get, made by the store's token codec."""
        return tokens.cursor(self.revision, self.after)

    @classmethod
    def decode(cls, text: str, tokens: TokenCodec) -> Cursor:
        """Read ``encode``'s output of the same store.

        Raises:
            InvalidRequestError: anything else (field ``cursor``).
            RevisionUnavailableError: a cursor of another store.
        """
        revision, after = tokens.cursor_state(text)
        if len(after) != 6:
            raise InvalidRequestError("malformed cursor", field="cursor")
        return cls(revision, (after[0], after[1], after[2], after[3], after[4], after[5]))


@dataclass(frozen=True, slots=True)
class ReadPage:
    """One page of a relationship listing; ``cursor`` is ``None`` on the last page."""

    relationships: tuple[Relationship, ...]
    revision: Revision
    cursor: Cursor | None


class ChangeKind(Enum):
    """What a change-log event records."""

    TOUCH = "touch"
    DELETE = "delete"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One entry of the change log; ``relationship`` is ``None`` for POLICY events.

    A TOUCH that replaces a relationship's caveat or expiry is one TOUCH event
    carrying the new attributes; a TOUCH of an identical relationship is no event.
    """

    revision: Revision
    kind: ChangeKind
    relationship: Relationship | None = None


class StoredPolicy(NamedTuple):
    """A policy as stored: its text, its compiled form and the revision that wrote it."""

    text: str
    schema: Schema
    revision: Revision


class GcResult(NamedTuple):
    """What one ``gc`` call did."""

    removed: int
    oldest_revision: Revision


class RevisionHold:
    """A lease that keeps ``gc`` from collecting rows visible at ``revision``.

    Use it as a context manager, or call ``release``. ``renew`` extends the
    lease by its ttl from now.
    """

    def __init__(
        self,
        revision: Revision,
        release: Callable[[], None],
        renew: Callable[[], None],
    ) -> None:
        self.revision = revision
        self._release = release
        self._renew = renew
        self._released = False

    def renew(self) -> None:
        """Extend the lease."""
        self._renew()

    def release(self) -> None:
        """Drop the hold; a second call does nothing."""
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> RevisionHold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Store(Protocol):
    """The relationship store: revisioned relationships, the policy, and the change log.

    Guarantees are in this module's docstring. Methods are safe to call from
    several threads; SQL backends may be shared by several processes.
    """

    clock: Clock
    """The store's time source: what "now" means for expiry, holds and GC."""

    identity: bytes
    """The store's identity: ``STORE_IDENTITY_BYTES`` random bytes made with the store and
    never changed (kept in the database by SQL backends, per instance by MemoryStore).
    Consistency tokens and cursors carry it, so one from another store is refused."""

    def head_revision(self) -> Revision:
        """The newest committed revision (0 for an empty store)."""
        ...

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> Revision:
        """Apply a batch of updates atomically, or nothing at all.

        CREATE fails with AlreadyExistsError when the relationship is live;
        TOUCH creates or replaces (a no-op when caveat and expiry are unchanged);
        DELETE removes it if live. Preconditions are checked at the head inside
        the transaction. Every CREATE and TOUCH is validated against the current
        policy; two updates of the same relationship in one batch are refused.

        Raises:
            InvalidRelationshipError: a relationship is malformed or the policy
                does not allow it (or no policy was written yet).
            AlreadyExistsError: a CREATE of a live relationship.
            PreconditionFailedError: a precondition does not hold.
        """
        ...

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[Revision, int]:
        """Delete live relationships matching a non-empty filter, at most ``limit`` in key order.

        Returns the new revision and how many relationships were deleted; a
        caller deleting in chunks repeats until the count is below ``limit``.
        """
        ...

    def read(
        self,
        relationship_filter: RelationshipFilter,
        revision: Revision | None = None,
        cursor: Cursor | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ReadPage:
        """One page of relationships matching the filter, in key order.

        With a cursor, the listing continues at the cursor's revision;
        ``revision`` must then be ``None`` or equal to it. A malformed filter
        value is InvalidRequestError (``RelationshipFilter.validate``), here and
        in ``delete`` and ``write``'s preconditions.
        """
        ...

    def get(self, key: RelationshipKey, revision: Revision | None = None) -> Relationship | None:
        """The live relationship with this key at ``revision``, with caveat and expiry."""
        ...

    def exists(self, key: RelationshipKey, revision: Revision | None = None) -> bool:
        """Whether the relationship with this key is live at ``revision`` (the point read)."""
        ...

    def subjects_of(
        self,
        resource_type: str,
        resource_ids: Collection[str],
        relation: str,
        revision: Revision | None = None,
        *,
        subject_type: str | None = None,
    ) -> list[Relationship]:
        """Every live ``resource_type:id#relation@…`` for the ids, in key order, in one query."""
        ...

    def resources_of(
        self,
        resource_type: str,
        relation: str,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None = None,
        revision: Revision | None = None,
    ) -> list[Relationship]:
        """Every live ``resource_type:…#relation@subject_type:id[#subject_relation]``, in one query.

        ``subject_relation=None`` selects plain subjects (no relation). Wildcard
        relationships are stored with subject id ``*``: include ``"*"`` in
        ``subject_ids`` to find them. Ordered by subject id, then resource id.
        """
        ...

    def write_policy(self, text: str, schema: Schema) -> Revision:
        """Store a new policy and its compiled form.

        Raises:
            PolicyChangeRefusedError: stored live relationships would no longer
                be allowed; ``blockers`` names each kind of them and how many.
        """
        ...

    def read_policy(self, revision: Revision | None = None) -> StoredPolicy | None:
        """The policy in force at ``revision`` (default head), or ``None`` before the first."""
        ...

    def changes(self, after: Revision, limit: int = DEFAULT_CHANGES_LIMIT) -> list[ChangeEvent]:
        """Change-log events of revisions above ``after``, in revision order.

        Within a revision: POLICY, then DELETE, then TOUCH events, each in key
        order. A revision is never split: the list may run past ``limit`` to
        finish its last revision. Expiry makes no events. Resume with
        ``after=events[-1].revision``; an empty list means nothing newer yet.

        Raises:
            RevisionUnavailableError: ``after`` is older than the oldest kept revision.
        """
        ...

    def import_relationships(self, relationships: Iterable[Relationship]) -> Revision:
        """Bulk-create relationships in one transaction; the fast path for large loads.

        Validated like ``write``; any relationship that is already live, or
        repeated in the input, fails the whole import with AlreadyExistsError.
        """
        ...

    def export_relationships(self, revision: Revision | None = None) -> Iterator[Relationship]:
        """Every live relationship at ``revision`` in key order, streamed in pages.

        The revision is held for as long as the iterator runs.
        """
        ...

    def export_rows(self, revision: Revision) -> Iterator[ExportRow]:
        """Every live relationship at ``revision`` as raw rows, in key order, streamed in pages.

        The fast path for loading an in-memory index: no objects are built.
        The revision is held for as long as the iterator runs.
        """
        ...

    def hold(self, revision: Revision, ttl: timedelta = DEFAULT_HOLD_TTL) -> RevisionHold:
        """Keep ``gc`` from collecting what ``revision`` sees, until released or ``ttl`` passes."""
        ...

    def gc(self, window: timedelta = DEFAULT_GC_WINDOW) -> GcResult:
        """Remove rows deleted more than ``window`` ago and expired rows; respects holds."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


# ---- helpers shared by the backends -------------------------------------------------------------

LIVE = 9223372036854775807
"""``deleted_revision`` of a row that is not deleted (SQL backends index a sentinel, not NULL)."""


def to_micros(value: datetime | None) -> int | None:
    """Expiry as integer microseconds since the epoch (exact, unlike floats)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int | None) -> datetime | None:
    """The inverse of ``to_micros``, in UTC."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dump_context(context: dict[str, Any]) -> str | None:
    """Caveat context as stored: canonical JSON, or ``None`` when empty."""
    return json.dumps(context, sort_keys=True, separators=(",", ":")) if context else None


def check_limit(limit: int | None, field: str = "limit") -> None:
    """Raise InvalidRequestError for a limit that is not a positive int."""
    if limit is not None and limit < 1:
        raise InvalidRequestError(f"{field} must be positive, got {limit}", field=field)


def check_preconditions(preconditions: Sequence[Precondition]) -> None:
    """Raise InvalidRequestError naming ``preconditions[i].filter.<part>`` for a malformed one."""
    for i, precondition in enumerate(preconditions):
        precondition.filter.validate(f"preconditions[{i}].filter")


def check_cursor_revision(cursor: Cursor | None, revision: Revision | None) -> Revision | None:
    """The revision a paged read runs at, given a cursor and an explicit revision."""
    if cursor is None:
        return revision
    if revision is not None and revision != cursor.revision:
        raise InvalidRequestError(
            f"cursor is for revision {cursor.revision}, not {revision}", field="cursor"
        )
    return cursor.revision
