"""Package store.base defines the Store protocol every backend implements, and the values it passes.

The engine talks to storage only through ``Store``. One contract, three
backends (``MemoryStore``, ``SqliteStore``, ``PostgresStore``), one test suite.

``Store`` is small roles combined, as OpenFGA's datastore is, so each caller
names the part it uses and each role states its own guarantees:

- ``SnapshotReader``: every read at one revision, from ``store.snapshot(revision)``
  as in SpiceDB (the engine's ``StoreReader``, the index's initial load, the
  API's Read and Export);
- ``Writer``: atomic writes, each yielding a new revision (the engine);
- ``ChangeLog``: the head revision and the events after a revision (the
  index following the store, the API's Watch, metrics);
- ``Retention``: garbage collection, and holds that keep old revisions readable.

The data model under all of them is MVCC: rows record the revision that
created them and the one that deleted them, so a snapshot at an old revision
reads old data until GC collects it. A relationship whose ``expires_at`` has
passed by the store clock is invisible to every read at every revision from
that moment on, absent to writes, and removed physically by ``gc``.

The module runs past 500 lines because each role writes its guarantees out in
full; the roles and the values they pass are one contract, read together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeAlias, assert_never, runtime_checkable

from policyd.errors import InvalidRequestError, PolicydError
from policyd.filters import Precondition, RelationshipFilter
from policyd.relationship import (
    Relationship,
    RelationshipKey,
    RelationshipUpdate,
)
from policyd.schema.ir import Schema
from policyd.store.records import AppliedRecords, Change
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

CALL_DEADLINE: ContextVar[float | None] = ContextVar("policyd_call_deadline", default=None)
"""The ``time.monotonic()`` by which the current call must be answered, or None.

The API sets it per call from the client's deadline; a store bounds its waits
(a pooled connection, a lock) by it, so a call never waits on the store past
the moment its client stops listening.
"""


def wait_bound(limit: float) -> float:
    """Seconds a store may wait now: ``limit``, or less when the call's deadline is nearer."""
    deadline = CALL_DEADLINE.get()
    if deadline is None:
        return limit
    return max(0.0, min(limit, deadline - time.monotonic()))


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


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """``Writer.write`` as a value, for ``Writer.write_group``; its outcome is a Revision."""

    updates: tuple[RelationshipUpdate, ...]
    preconditions: tuple[Precondition, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """``Writer.delete`` as a value; its outcome is ``(revision, deleted count)``."""

    filter: RelationshipFilter
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """``Writer.write_policy`` as a value; its outcome is a Revision."""

    text: str
    schema: Schema


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """``Writer.import_relationships`` of a small batch as a value; its outcome is a Revision."""

    relationships: tuple[Relationship, ...]


GroupRequest: TypeAlias = WriteRequest | DeleteRequest | PolicyRequest | ImportRequest
"""One request of a group commit (``Writer.write_group``)."""

Outcome: TypeAlias = Revision | tuple[Revision, int] | PolicydError
"""What one request of a group came to: its method's return value, or the error it raised."""


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


class SnapshotReader(Protocol):
    """Reads at one revision, made by ``Store.snapshot`` (SpiceDB's ``SnapshotReader``).

    Revision
        Every read sees exactly the relationships live at ``revision``: created
        at or below it, not deleted at or below it, and not expired by the
        store clock's "now" when the read runs. Making a snapshot checks
        nothing; each read raises RevisionUnavailableError when ``revision``
        is above the head or below the oldest kept revision at the moment it
        runs (see ``Retention``: a snapshot read for longer than the GC window
        needs a hold). The revision check and the data come from one step
        (one statement in SQL), so a concurrent GC never yields a partial answer.

    Ordering
        Relationships come in key order (resource type, resource id, relation,
        subject type, subject id, subject relation '' for none), compared as
        code points (SQLite's BINARY and PostgreSQL's "C" collation); only
        ``resources_of`` orders otherwise, as it says.

    Paging
        ``read`` returns at most ``limit`` relationships and a cursor for the
        next page, or ``None`` on the last page. A cursor carries its
        revision, so every page of one listing comes from one snapshot. The
        exports stream the whole snapshot in pages and keep GC away from it
        (``Retention.hold``) for as long as they run. ``subjects_of`` and
        ``resources_of`` answer for any number of ids in one query.
    """

    revision: Revision

    def get(self, key: RelationshipKey) -> Relationship | None:
        """The live relationship with this key, with caveat and expiry (the point read)."""
        ...

    def subjects_of(
        self,
        resource_type: str,
        resource_ids: Collection[str],
        relation: str,
        *,
        subject_type: str | None = None,
    ) -> list[Relationship]:
        """Every live ``resource_type:id#relation@…`` for the ids, in key order."""
        ...

    def resources_of(
        self,
        resource_type: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None = None,
    ) -> list[Relationship]:
        """Every live ``resource_type:…#relation@subject_type:id[#subject_relation]``.

        ``subject_relation=None`` selects plain subjects (no relation). Wildcard
        relationships are stored with subject id ``*``: include ``"*"`` in
        ``subject_ids`` to find them. Ordered by subject id, then resource id.
        """
        ...

    def read(
        self,
        relationship_filter: RelationshipFilter,
        cursor: Cursor | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ReadPage:
        """One page of relationships matching the filter, in key order, after ``cursor``.

        Raises:
            InvalidRequestError: a malformed filter value (``RelationshipFilter.validate``),
                a limit below 1, or a cursor of another revision (field ``cursor``).
        """
        ...

    def export_relationships(self) -> Iterator[Relationship]:
        """Every live relationship, in key order, streamed in pages."""
        ...

    def export_rows(self) -> Iterator[ExportRow]:
        """Every live relationship as raw rows, in key order, streamed in pages.

        The fast path for loading an in-memory index: no objects are built.
        """
        ...

    def read_policy(self) -> StoredPolicy | None:
        """The policy in force at this revision, or ``None`` before the first."""
        ...


class Writer(Protocol):
    """Writes: each call commits atomically, all or nothing, and yields one new revision.

    Revision
        Revisions are ints, strictly increasing, assigned in commit order; an
        empty store is at revision 0. A reader who can see revision R sees
        every write at or below R and nothing above it. A write that changes
        nothing (a TOUCH of an identical relationship, a DELETE of a missing
        one) still commits a revision, with no change-log events.

    Expiry
        A relationship whose ``expires_at`` is at or before the store clock's
        "now" is absent to writes: CREATE succeeds over it, TOUCH replaces it,
        DELETE and ``delete`` ignore it.

    Ordering
        Preconditions, the existence checks of CREATE and import, and the
        validation of relationships against the policy all run at the head,
        inside the write's transaction. ``delete`` with a limit removes the
        first matches in key order.
    """

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> Revision:
        """Apply a batch of updates atomically, or nothing at all.

        CREATE fails with AlreadyExistsError when the relationship is live;
        TOUCH creates or replaces (a no-op when caveat and expiry are unchanged);
        DELETE removes it if live. Two updates of the same relationship in one
        batch are refused.

        Raises:
            InvalidRelationshipError: a relationship is malformed or the policy
                does not allow it (or no policy was written yet).
            InvalidRequestError: a precondition's filter is malformed
                (``preconditions[i].filter.<part>``).
            AlreadyExistsError: a CREATE of a live relationship.
            PreconditionFailedError: a precondition does not hold.
        """
        ...

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[Revision, int]:
        """Delete live relationships matching a non-empty filter, at most ``limit``.

        Returns the new revision and how many relationships were deleted; a
        caller deleting in chunks repeats until the count is below ``limit``.
        A delete that matches nothing makes no revision: it returns the head.
        A malformed filter value is InvalidRequestError naming ``filter.<part>``.
        """
        ...

    def import_relationships(self, relationships: Iterable[Relationship]) -> Revision:
        """Bulk-create relationships in one transaction; the fast path for large loads.

        Validated like ``write``; any relationship that is already live, or
        repeated in the input, fails the whole import with AlreadyExistsError.
        """
        ...

    def write_policy(self, text: str, schema: Schema) -> Revision:
        """Store a new policy and its compiled form.

        Raises:
            PolicyChangeRefusedError: stored live relationships would no longer
                be allowed; ``blockers`` names each kind of them and how many.
        """
        ...

    def policy_blockers(self, schema: Schema) -> list[str]:
        """What ``write_policy`` of ``schema`` would be refused for at the head, writing nothing.

        The dry run of ``write_policy``: the same list its PolicyChangeRefusedError
        would carry (empty when the change would be accepted now).
        """
        ...

    def write_group(self, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """Apply several requests in one transaction with one commit (group commit).

        Each request is applied in order, all or nothing, exactly as its own
        method would apply it, and yields its own revision (so revisions stay
        one per request, in commit order, and the change log and Watch show
        each request as its own revision). A request that fails changes
        nothing and gets its error in its place in the result; the others
        still commit. Nothing is visible to readers, and nothing is durable,
        until the whole group commits.

        Raises:
            StoreError: the store itself failed; nothing of the group was written.
        """
        ...


class ChangeLog(Protocol):
    """The head revision and what each revision changed, for followers (the index, Watch).

    Ordering
        Events come in revision order; within a revision, POLICY, then DELETE,
        then TOUCH events, each in key order. Expiry makes no events.

    Paging
        ``changes(after, limit)`` returns events of revisions above ``after``;
        it may run past ``limit`` to finish its last revision, so a revision is
        never split between calls. Resume with ``after=events[-1].revision``;
        an empty list means nothing newer yet. ``upto`` stops at a revision:
        only events of revisions in (after, upto].

    Revision
        Events are kept back to the oldest kept revision (see ``Retention``);
        ``after`` older than that raises RevisionUnavailableError.
    """

    def head_revision(self) -> Revision:
        """The newest committed revision (0 for an empty store)."""
        ...

    def changes(
        self, after: Revision, limit: int = DEFAULT_CHANGES_LIMIT, upto: Revision | None = None
    ) -> list[ChangeEvent]:
        """Change-log events of revisions above ``after`` (and at most ``upto``), in order."""
        ...

    def revision_stamp(self, revision: Revision) -> int | None:
        """When ``revision`` committed (µs since the epoch); None if the store has no such revision.

        With the store's identity, a fingerprint of one revision: a store
        restored from an older copy and written since keeps its identity and
        reuses revision numbers, but commits them at other times (an index
        snapshot of the lost history must not be served; engine/snapshot.py).
        None for a revision never made, or collected (see ``Retention``).
        """
        ...


class Retention(Protocol):
    """Which old revisions stay readable: garbage collection, and holds that keep it away.

    Revision
        ``gc(window)`` removes rows deleted at a revision committed more than
        ``window`` ago (default 24 h), and expired rows; the store's oldest
        readable revision then moves up to the collection point, and snapshot
        reads or change-log reads below it raise RevisionUnavailableError.
        GC never removes a row a held revision can see: a reader that needs
        revision R for a while calls ``hold(R)`` and keeps the RevisionHold
        until it is done. Holds live in the store itself (a table for SQL
        backends), so they protect readers in every process sharing the
        database; each has a lease (``ttl``) so a crashed reader cannot block
        collection for ever.
    """

    def hold(self, revision: Revision, ttl: timedelta = DEFAULT_HOLD_TTL) -> RevisionHold:
        """Keep ``gc`` from collecting what ``revision`` sees, until released or ``ttl`` passes."""
        ...

    def gc(self, window: timedelta = DEFAULT_GC_WINDOW) -> GcResult:
        """Remove rows deleted more than ``window`` ago and expired rows; respects holds."""
        ...


@runtime_checkable
class ChangeNotifier(Protocol):
    """A store that can say when a revision commits anywhere (PostgreSQL: LISTEN/NOTIFY).

    Followers use it to look at the change log as soon as it grows, and poll
    only as a fallback; a store without it is polled.
    """

    def wait_for_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a commit; True if one came (False may be wrong)."""
        ...


class RecordSink(Protocol):
    """Relationships kept in step with records from the network (``policyd.ingest``).

    Ordering
        ``apply_records`` folds its changes in order (see ``store.records``): a
        change whose ``rev`` is not above its record's stored rev is stale and
        changes nothing, so duplicates and late events are harmless. A
        relationship is live while some record links it.

    Revision
        One call is one transaction and one new revision: the relationships,
        the record rows and links, and ``position`` for ``source`` commit
        together or not at all, so a crash never loses or repeats a batch.
    """

    def apply_records(
        self, source: str, changes: Sequence[Change], position: int | None
    ) -> AppliedRecords:
        """Apply record changes and move ``source``'s position to ``position``, atomically.

        Raises:
            InvalidRelationshipError: a relationship the policy does not allow (nothing applied).
        """
        ...

    def ingest_position(self, source: str) -> int | None:
        """The position last stored for ``source`` (a firehose seq, a Jetstream time), if any."""
        ...


class Store(Writer, ChangeLog, Retention, RecordSink, Protocol):
    """The relationship store: snapshots to read at a revision, and the roles above.

    Methods are safe to call from several threads; SQL backends may be shared
    by several processes.
    """

    clock: Clock
    """The store's time source: what "now" means for expiry, holds and GC."""

    identity: bytes
    """The store's identity: ``STORE_IDENTITY_BYTES`` random bytes made with the store and
    never changed (kept in the database by SQL backends, per instance by MemoryStore).
    Consistency tokens and cursors carry it, so one from another store is refused."""

    def snapshot(self, revision: Revision | None = None) -> SnapshotReader:
        """A reader at ``revision``; ``None`` reads the head once, here, and stays at it."""
        ...

    def opener(self) -> Callable[[], Store] | None:
        """How another process opens this same store, or ``None`` when none can (memory).

        The callable pickles, so a server can hand it to its writer process.
        """
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


def check_read(
    relationship_filter: RelationshipFilter, cursor: Cursor | None, limit: int, revision: Revision
) -> None:
    """Raise InvalidRequestError for a read's malformed filter or limit, or a foreign cursor."""
    check_limit(limit)
    relationship_filter.validate()
    if cursor is not None and cursor.revision != revision:
        raise InvalidRequestError(
            f"cursor is for revision {cursor.revision}, not {revision}", field="cursor"
        )


def apply_request(writer: Writer, request: GroupRequest) -> Revision | tuple[Revision, int]:
    """Apply one group request through ``writer``'s own method (what ``write_group`` means)."""
    match request:
        case WriteRequest():
            return writer.write(request.updates, request.preconditions)
        case DeleteRequest():
            return writer.delete(request.filter, request.limit)
        case PolicyRequest():
            return writer.write_policy(request.text, request.schema)
        case ImportRequest():
            return writer.import_relationships(request.relationships)
        case _:
            assert_never(request)
