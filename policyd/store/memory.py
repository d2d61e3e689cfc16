"""Package store.memory holds MemoryStore: the Store contract in plain dicts, for tests.

It keeps the same MVCC rows as the SQL backends (created and deleted revision
per version of a relationship) so it answers snapshot reads, the change log
and GC identically; it is simple rather than fast, and lives in one process.
It runs past 500 lines because it implements every role of the Store
contract, each in a few plain lines.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from policyd.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    PolicyChangeRefusedError,
    PolicydError,
    PreconditionFailedError,
    RevisionUnavailableError,
)
from policyd.filters import Precondition, PreconditionKind, RelationshipFilter
from policyd.relationship import Operation, Relationship, RelationshipKey, RelationshipUpdate
from policyd.schema.ir import Schema
from policyd.store import records
from policyd.store.base import (
    DEFAULT_CHANGES_LIMIT,
    DEFAULT_GC_WINDOW,
    DEFAULT_HOLD_TTL,
    DEFAULT_PAGE_SIZE,
    LIVE,
    ChangeEvent,
    ChangeKind,
    Clock,
    Cursor,
    ExportRow,
    GcResult,
    GroupRequest,
    Outcome,
    ReadPage,
    Revision,
    RevisionHold,
    SnapshotReader,
    StoredPolicy,
    apply_request,
    check_limit,
    check_preconditions,
    check_read,
    dump_context,
    to_micros,
)
from policyd.store.validation import (
    Shape,
    Validator,
    context_blockers,
    orphan_blockers,
    shape_of,
)
from policyd.tokens import new_store_identity


@dataclass(slots=True)
class _Row:
    relationship: Relationship
    created: Revision
    deleted: Revision
    expires: int | None  # microseconds

    def visible(self, revision: Revision, now: int) -> bool:
        return self.created <= revision < self.deleted and (
            self.expires is None or self.expires > now
        )


class MemoryStore:
    """The Store contract in memory; one lock serialises writes and reads."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.identity = new_store_identity()
        self._lock = threading.RLock()
        self._versions: dict[RelationshipKey, list[_Row]] = {}
        self._revision_times: dict[Revision, float] = {0: clock()}
        self._head: Revision = 0
        self._oldest: Revision = 0
        self._policies: list[StoredPolicy] = []
        self._holds: dict[int, tuple[Revision, float]] = {}
        self._hold_ids = itertools.count(1)
        self._validator = Validator(None)
        self._closed = False
        self._records: dict[str, records.RecordState] = {}
        self._record_links: dict[RelationshipKey, frozenset[str]] = {}
        self._positions: dict[str, int] = {}

    # ---- revisions -----------------------------------------------------------------------------

    def head_revision(self) -> Revision:
        """The newest committed revision."""
        with self._lock:
            return self._head

    def revision_stamp(self, revision: Revision) -> int | None:
        """When ``revision`` committed (see ChangeLog)."""
        with self._lock:
            at = self._revision_times.get(revision)
        return None if at is None else int(at * 1_000_000)

    def _now(self) -> int:
        return int(self.clock() * 1_000_000)

    def _at(self, revision: Revision | None) -> Revision:
        if self._closed:
            raise InvalidRequestError("the store is closed")
        if revision is None:
            return self._head
        if revision > self._head:
            raise RevisionUnavailableError(
                f"revision {revision} is in the future (head is {self._head})", field="revision"
            )
        if revision < self._oldest:
            raise RevisionUnavailableError(
                f"revision {revision} was garbage-collected (oldest kept is {self._oldest})",
                field="revision",
            )
        return revision

    def _next_revision(self) -> Revision:
        self._head += 1
        self._revision_times[self._head] = self.clock()
        return self._head

    def _live(self, key: RelationshipKey) -> _Row | None:
        for row in self._versions.get(key, ()):
            if row.deleted == LIVE:
                return row
        return None

    def _visible(self, revision: Revision) -> Iterator[Relationship]:
        now = self._now()
        for key in sorted(self._versions):
            for row in self._versions[key]:
                if row.visible(revision, now):
                    yield row.relationship
                    break

    # ---- writes --------------------------------------------------------------------------------

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> Revision:
        """Apply a batch atomically (see Writer.write)."""
        check_preconditions(preconditions)
        with self._lock:
            self._at(None)
            self._validator.check_updates(updates)
            now = self._now()
            head = self._head
            for p in preconditions:
                found = any(
                    p.filter.matches(r.relationship) and r.visible(head, now)
                    for rows in self._versions.values()
                    for r in rows
                )
                if found != (p.kind is PreconditionKind.MUST_MATCH):
                    raise PreconditionFailedError(
                        f"precondition failed: {p}", field="preconditions"
                    )
            for i, update in enumerate(updates):
                live = self._live(update.relationship.key)
                if (
                    update.operation is Operation.CREATE
                    and live is not None
                    and live.visible(head, now)
                ):
                    raise AlreadyExistsError(
                        f"updates[{i}]: {update.relationship} already exists",
                        field=f"updates[{i}].relationship",
                    )
            revision = self._next_revision()
            for update in updates:
                self._apply(update, revision, now)
            return revision

    def _apply(self, update: RelationshipUpdate, revision: Revision, now: int) -> None:
        rel = update.relationship
        live = self._live(rel.key)
        live_visible = live is not None and live.visible(revision, now)
        if update.operation is Operation.DELETE:
            if live is not None and live_visible:
                live.deleted = revision
            return
        if (
            live is not None
            and live_visible
            and update.operation is Operation.TOUCH
            and _same_attributes(live.relationship, rel)
        ):
            return
        if live is not None:
            live.deleted = revision
        self._versions.setdefault(rel.key, []).append(
            _Row(rel, revision, LIVE, to_micros(rel.expires_at))
        )

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[Revision, int]:
        """Delete live relationships matching the filter (see Writer.delete)."""
        check_limit(limit)
        relationship_filter.validate()
        if relationship_filter.is_empty():
            raise InvalidRequestError("delete needs a non-empty filter", field="filter")
        with self._lock:
            self._at(None)
            matches = [r for r in self._visible(self._head) if relationship_filter.matches(r)]
            if limit is not None:
                matches = matches[:limit]
            if not matches:  # nothing to delete: no revision (as the SQL stores)
                return self._head, 0
            revision = self._next_revision()
            for rel in matches:
                row = self._live(rel.key)
                assert row is not None
                row.deleted = revision
            return revision, len(matches)

    def import_relationships(self, relationships: Iterable[Relationship]) -> Revision:
        """Bulk-create relationships atomically (see Writer.import_relationships)."""
        with self._lock:
            self._at(None)
            batch = list(relationships)
            now = self._now()
            seen: set[RelationshipKey] = set()
            for i, rel in enumerate(batch):
                self._validator.check(rel, f"relationships[{i}]")
                live = self._live(rel.key)
                if rel.key in seen or (live is not None and live.visible(self._head, now)):
                    raise AlreadyExistsError(
                        f"relationships[{i}]: {rel} already exists",
                        field=f"relationships[{i}]",
                    )
                seen.add(rel.key)
            revision = self._next_revision()
            for rel in batch:
                self._apply(RelationshipUpdate(Operation.CREATE, rel), revision, now)
            return revision

    def write_group(self, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """Apply each request in turn under one hold of the lock (see Writer.write_group).

        Every single write here checks before it changes anything, so a failed
        request leaves nothing behind; there is no disk to share a commit on.
        """
        outcomes: list[Outcome] = []
        with self._lock:
            for request in requests:
                try:
                    outcomes.append(apply_request(self, request))
                except PolicydError as e:
                    outcomes.append(e)
        return outcomes

    # ---- records from the network -------------------------------------------------------------

    def apply_records(
        self, source: str, changes: Sequence[records.Change], position: int | None
    ) -> records.AppliedRecords:
        """Apply record changes, their links and ``source``'s position atomically (RecordSink)."""
        with self._lock:
            self._at(None)
            planned = records.plan(changes, self._records)
            links = {**self._record_links}
            for uri, state in planned.records.items():
                for key in self._records[uri].keys if uri in self._records else ():
                    links[key] = links[key] - {uri}
                for key in state.keys:
                    links[key] = links.get(key, frozenset()) | {uri}
            updates = [
                RelationshipUpdate(
                    Operation.TOUCH if links.get(key) else Operation.DELETE,
                    planned.relationships.get(key) or Relationship.from_key(key),
                )
                for key in sorted(planned.keys)
            ]
            self._validator.check_updates(updates)
            revision = self._next_revision()
            now = self._now()
            for update in updates:
                self._apply(update, revision, now)
            self._records.update(planned.records)
            self._record_links = {k: v for k, v in links.items() if v}
            if position is not None:
                self._positions[source] = position
            return records.AppliedRecords(revision, planned.applied, planned.stale)

    def ingest_position(self, source: str) -> int | None:
        """The position last stored for ``source`` (RecordSink)."""
        with self._lock:
            return self._positions.get(source)

    # ---- reads ---------------------------------------------------------------------------------

    def snapshot(self, revision: Revision | None = None) -> SnapshotReader:
        """A reader at ``revision`` (see Store.snapshot)."""
        if revision is None:
            with self._lock:
                revision = self._at(None)
        return _Snapshot(self, revision)

    # ---- policy --------------------------------------------------------------------------------

    def write_policy(self, text: str, schema: Schema) -> Revision:
        """Store a new policy unless it orphans live relationships or their context parameters."""
        with self._lock:
            self._at(None)
            blockers = self._blockers(schema)
            if blockers:
                raise PolicyChangeRefusedError(
                    "the new policy would orphan stored relationships", blockers
                )
            revision = self._next_revision()
            self._policies.append(StoredPolicy(text, schema, revision))
            self._validator = Validator(schema)
            return revision

    def policy_blockers(self, schema: Schema) -> list[str]:
        """What ``write_policy(…, schema)`` would be refused for now, written nowhere."""
        with self._lock:
            self._at(None)
            return self._blockers(schema)

    def _blockers(self, schema: Schema) -> list[str]:
        counts: dict[Shape, int] = {}
        keys: dict[tuple[str, str], int] = {}
        for rel in self._visible(self._head):
            shape = shape_of(rel)
            counts[shape] = counts.get(shape, 0) + 1
            caveat = rel.caveat_name
            if caveat is not None:
                for key in rel.caveat_context:
                    keys[caveat, key] = keys.get((caveat, key), 0) + 1
        return orphan_blockers(schema, counts.items()) + context_blockers(
            self._validator.schema, schema, ((c, k, n) for (c, k), n in keys.items())
        )

    # ---- change log ----------------------------------------------------------------------------

    def changes(
        self, after: Revision, limit: int = DEFAULT_CHANGES_LIMIT, upto: Revision | None = None
    ) -> list[ChangeEvent]:
        """Change-log events after ``after`` (see ChangeLog.changes)."""
        check_limit(limit)
        last_wanted = LIVE - 1 if upto is None else upto
        with self._lock:
            self._at(after)
            events: list[tuple[Revision, int, RelationshipKey, ChangeEvent]] = []
            empty_key: RelationshipKey = ("", "", "", "", "", "")
            for p in self._policies:
                if after < p.revision <= last_wanted:
                    event = ChangeEvent(p.revision, ChangeKind.POLICY)
                    events.append((p.revision, 0, empty_key, event))
            for key, rows in self._versions.items():
                created = {r.created for r in rows}
                for r in rows:
                    if after < r.created <= last_wanted:
                        event = ChangeEvent(r.created, ChangeKind.TOUCH, r.relationship)
                        events.append((r.created, 2, key, event))
                    deleted = r.deleted
                    if after < deleted <= last_wanted and deleted not in created:
                        event = ChangeEvent(r.deleted, ChangeKind.DELETE, r.relationship)
                        events.append((r.deleted, 1, key, event))
            events.sort(key=lambda e: e[:3])
            if len(events) > limit:
                last = events[limit - 1][0]
                events = [e for e in events if e[0] <= last]
            return [e[3] for e in events]

    # ---- garbage collection --------------------------------------------------------------------

    def hold(self, revision: Revision, ttl: timedelta = DEFAULT_HOLD_TTL) -> RevisionHold:
        """Keep ``gc`` away from what ``revision`` sees (see Retention.hold)."""
        with self._lock:
            self._at(revision)
            hold_id = next(self._hold_ids)
            self._holds[hold_id] = (revision, self.clock() + ttl.total_seconds())

        def release() -> None:
            with self._lock:
                self._holds.pop(hold_id, None)

        def renew() -> None:
            with self._lock:
                if hold_id in self._holds:
                    self._holds[hold_id] = (revision, self.clock() + ttl.total_seconds())

        return RevisionHold(revision, release, renew)

    def gc(self, window: timedelta = DEFAULT_GC_WINDOW) -> GcResult:
        """Collect old deleted rows and expired rows (see Retention.gc)."""
        with self._lock:
            now = self.clock()
            cutoff = now - window.total_seconds()
            self._holds = {k: v for k, v in self._holds.items() if v[1] > now}
            point = max(
                (r for r, t in self._revision_times.items() if t <= cutoff), default=self._oldest
            )
            for held, _ in self._holds.values():
                point = min(point, held)
            point = max(point, self._oldest)
            now_us = int(now * 1_000_000)
            removed = 0
            for key in list(self._versions):
                rows = self._versions[key]
                kept = [
                    r
                    for r in rows
                    if r.deleted > point and (r.expires is None or r.expires > now_us)
                ]
                removed += len(rows) - len(kept)
                if kept:
                    self._versions[key] = kept
                else:
                    del self._versions[key]
            self._oldest = point
            self._revision_times = {r: t for r, t in self._revision_times.items() if r >= point}
            return GcResult(removed, point)

    def opener(self) -> None:
        """None: no other process can see this store."""
        return None

    def close(self) -> None:
        """Mark the store closed."""
        self._closed = True


class _Snapshot:
    """MemoryStore's SnapshotReader: each read takes the store's lock and checks the revision."""

    def __init__(self, store: MemoryStore, revision: Revision) -> None:
        self._store = store
        self.revision = revision

    def _visible(self) -> Iterator[Relationship]:
        """The relationships live at this revision, in key order; call with the lock held."""
        return self._store._visible(self._store._at(self.revision))

    def get(self, key: RelationshipKey) -> Relationship | None:
        """The live relationship with this key."""
        store = self._store
        with store._lock:
            at = store._at(self.revision)
            now = store._now()
            for row in store._versions.get(key, ()):
                if row.visible(at, now):
                    return row.relationship
            return None

    def subjects_of(
        self,
        resource_type: str,
        resource_ids: Collection[str],
        relation: str,
        *,
        subject_type: str | None = None,
    ) -> list[Relationship]:
        """Relationships of the given resources and relation, in key order."""
        ids = set(resource_ids)
        with self._store._lock:
            return [
                r
                for r in self._visible()
                if r.resource.type == resource_type
                and r.resource.id in ids
                and r.relation == relation
                and (subject_type is None or r.subject.type == subject_type)
            ]

    def resources_of(
        self,
        resource_type: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None = None,
    ) -> list[Relationship]:
        """Relationships to the given subjects, ordered by subject id then resource id."""
        ids = set(subject_ids)
        with self._store._lock:
            found = [
                r
                for r in self._visible()
                if r.resource.type == resource_type
                and r.relation == relation
                and r.subject.type == subject_type
                and r.subject.id in ids
                and r.subject.relation == subject_relation
            ]
        return sorted(found, key=lambda r: (r.subject.id, r.resource.id))

    def read(
        self,
        relationship_filter: RelationshipFilter,
        cursor: Cursor | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ReadPage:
        """One page of matching relationships in key order (see SnapshotReader.read)."""
        check_read(relationship_filter, cursor, limit, self.revision)
        out: list[Relationship] = []
        with self._store._lock:
            for rel in self._visible():
                if cursor is not None and rel.key <= cursor.after:
                    continue
                if relationship_filter.matches(rel):
                    out.append(rel)
                    if len(out) > limit:
                        break
        page = tuple(out[:limit])
        next_cursor = Cursor(self.revision, page[-1].key) if len(out) > limit else None
        return ReadPage(page, self.revision, next_cursor)

    def export_relationships(self) -> Iterator[Relationship]:
        """Every live relationship, in key order (copied at the first ``next``)."""
        with self._store._lock:
            snapshot = list(self._visible())
        yield from snapshot

    def export_rows(self) -> Iterator[ExportRow]:
        """Every live relationship as raw rows, in key order."""
        for rel in self.export_relationships():
            yield (
                *rel.key,
                rel.caveat_name,
                dump_context(rel.caveat_context),
                to_micros(rel.expires_at),
            )

    def read_policy(self) -> StoredPolicy | None:
        """The policy in force at this revision."""
        store = self._store
        with store._lock:
            at = store._at(self.revision)
            found = [p for p in store._policies if p.revision <= at]
            return found[-1] if found else None


def _same_attributes(a: Relationship, b: Relationship) -> bool:
    return (
        a.caveat_name == b.caveat_name
        and a.caveat_context == b.caveat_context
        and a.expires_at == b.expires_at
    )
