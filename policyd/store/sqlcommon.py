"""Package store.sqlcommon holds the MVCC logic both SQL backends share (after OpenFGA's sqlcommon).

The tables, by role (DDL lives with each backend):

``relationships``
    one row per version of a relationship: the key columns, caveat name and
    context (JSON text), ``expires_at`` (µs since the epoch, NULL for never),
    ``created_revision`` and ``deleted_revision`` (``LIVE`` while not deleted).
    Primary key (key, created_revision), so resource → subjects reads walk the
    primary key; an index on (subject key, resource type, relation, resource
    id, …) serves subject → resources; indexes on ``created_revision``,
    ``deleted_revision`` (partial: deleted rows only) and ``expires_at``
    (partial) serve the change log and GC.
``store_state``
    one row: ``head`` revision, ``oldest`` readable revision, ``policy_revision``,
    and ``store_id``, the store's random identity (see ``policyd.tokens``).
    Here every write takes its revision with ``UPDATE store_state SET head =
    head + 1`` under SQLite's write lock (``BEGIN IMMEDIATE``), held to commit,
    so revisions commit in order. PostgreSQL numbers writes by transaction id
    instead and moves the head separately (``policyd.store.postgres.revisions``).
``revisions``
    commit time of each revision, so GC can turn a time window into a revision.
``policies``
    text and compiled JSON per policy revision.
``revision_holds``
    the leases of ``Retention.hold``.
``ingest_records``, ``ingest_links``, ``ingest_positions``
    ``RecordSink``'s record rows, record → relationship links and positions
    (see ``policyd.store.records``).

``SqlStore`` writes, follows the change log and collects; ``SqlSnapshot`` reads.
Each snapshot read is one statement joining ``store_state`` to the data query,
so the revision check (not above head, not below oldest) and the data come
from one database snapshot even while GC runs in another process.

SQL here is written with ``?`` placeholders; a backend's ``_sql`` rewrites them.

It runs past 500 lines because it is every statement the two SQL backends
share (writes and group commit, reads, the change log, GC, ingested records),
all on one transaction discipline; a backend adds only what differs.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, Protocol, assert_never

from policyd.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    PolicyChangeRefusedError,
    PolicydError,
    PreconditionFailedError,
    RevisionUnavailableError,
    StoreError,
    StoreUnwritableError,
)
from policyd.filters import Precondition, PreconditionKind, RelationshipFilter
from policyd.relationship import (
    KEY_FIELDS,
    Operation,
    Relationship,
    RelationshipKey,
    RelationshipUpdate,
)
from policyd.schema.ir import Schema
from policyd.schema.serialize import schema_from_json, schema_to_json
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
    DeleteRequest,
    ExportRow,
    GcResult,
    GroupRequest,
    ImportRequest,
    Outcome,
    PolicyRequest,
    ReadPage,
    Revision,
    RevisionHold,
    SnapshotReader,
    StoredPolicy,
    WriteRequest,
    check_limit,
    check_preconditions,
    check_read,
    dump_context,
    from_micros,
    to_micros,
)
from policyd.store.validation import Shape, Validator, context_blockers, orphan_blockers

KEY_COLUMNS = KEY_FIELDS
KEY = ", ".join(KEY_COLUMNS)
ATTRS = "caveat_name, caveat_context, expires_at"
COLUMNS = f"{KEY}, {ATTRS}"
ROW_COLUMNS = f"{KEY}, created_revision, deleted_revision, {ATTRS}"
KEY_MATCH = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
VISIBLE = (
    "created_revision <= ? AND deleted_revision > ? AND (expires_at IS NULL OR expires_at > ?)"
)
LIVE_NOW = f"deleted_revision = {LIVE} AND (expires_at IS NULL OR expires_at > ?)"
STATE = "SELECT s.head, s.oldest, d.* FROM store_state s LEFT JOIN ({data}) d ON 1 = 1"
ORDER = "ORDER BY " + ", ".join(f"d.{c}" for c in KEY_COLUMNS)

INSERT = f"INSERT INTO relationships ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_LIVE = (
    f"SELECT created_revision, {ATTRS} FROM relationships "
    f"WHERE {KEY_MATCH} AND deleted_revision = {LIVE}"
)
RETIRE = f"UPDATE relationships SET deleted_revision = ? WHERE {KEY_MATCH} AND created_revision = ?"
GET = STATE.format(data=f"SELECT {COLUMNS} FROM relationships WHERE {KEY_MATCH} AND {VISIBLE}")

Row = tuple[Any, ...]


class SqlCursor(Protocol):
    """What the shared code needs of a connection: ``execute`` returning a DB-API cursor.

    ``sqlite3.Connection`` and ``psycopg.Connection`` both fit.
    """

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement; the result has ``fetchone``, ``fetchall`` and ``rowcount``."""
        ...


def filter_sql(relationship_filter: RelationshipFilter) -> tuple[str, list[Any]]:
    """WHERE conditions (joined with AND, or '1 = 1') and parameters for a filter."""
    parts, params = [], []
    for column, value in zip(KEY_COLUMNS, relationship_filter.values(), strict=True):
        if value is not None:
            parts.append(f"{column} = ?")
            params.append(value)
    return (" AND ".join(parts) or "1 = 1"), params


def relationship_from_row(row: Row) -> Relationship:
    """A Relationship from ``COLUMNS`` at the start of ``row``."""
    context, expires = row[7], row[8]
    return Relationship.from_key(
        row,
        row[6],
        json.loads(context) if context else None,
        None if expires is None else from_micros(expires),
    )


def row_values(rel: Relationship, revision: Revision) -> tuple[Any, ...]:
    """The ``ROW_COLUMNS`` values that store a new version of ``rel`` at ``revision``."""
    s = rel.subject
    return (
        rel.resource.type,
        rel.resource.id,
        rel.relation,
        s.type,
        s.id,
        s.relation or "",
        revision,
        LIVE,
        rel.caveat_name,
        dump_context(rel.caveat_context),
        to_micros(rel.expires_at),
    )


class SqlStore(ABC):
    """The Store contract over a DB-API connection; backends add connections, DDL and bulk load.

    A backend's ``__init__`` migrates the database, then calls ``_load_identity``.
    """

    identity: bytes
    """The store's identity (see Store.identity), made by the migration that added it."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._validator: tuple[Revision, Validator] = (-1, Validator(None))

    # ---- what a backend provides ---------------------------------------------------------------

    @abstractmethod
    def _read(self) -> AbstractContextManager[SqlCursor]:
        """A cursor for single-statement reads."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[SqlCursor]:
        """A cursor in a write transaction: committed on success, rolled back on any exception."""

    @abstractmethod
    def _sql(self, text: str) -> str:
        """Rewrite shared SQL (``?`` placeholders) for the backend."""

    @abstractmethod
    def _in_ids(self, column: str, ids: Collection[str]) -> tuple[str, Any]:
        """A condition ``column IN ids`` with one parameter: any number of ids, one statement."""

    @abstractmethod
    def _import_in(self, cur: SqlCursor, relationships: Iterable[Relationship]) -> Revision:
        """Bulk-create ``relationships`` at a new revision in the open write transaction.

        Fast paths differ (SQLite ``executemany`` under its one write lock,
        PostgreSQL a COPY staged before the revision is taken); both validate
        every relationship, refuse duplicates (AlreadyExistsError) and end with
        ``_finish_import`` when the store was not empty.
        """

    @abstractmethod
    def _context_keys_from(self) -> str:
        """A FROM clause over ``relationships`` with one row per top-level context key ``k.key``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    # ---- plumbing ------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock() * 1_000_000)

    def _exec(self, cur: SqlCursor, text: str, params: Sequence[Any] = ()) -> Any:
        return cur.execute(self._sql(text), params)

    def _exec_many(self, cur: SqlCursor, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows`` (nothing for none)."""
        if rows:
            self._many(cur, self._sql(text), rows)

    def _many(self, cur: SqlCursor, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """``executemany`` on the backend's connection (SQLite has it on the connection)."""
        cur.executemany(text, rows)  # type: ignore[attr-defined]

    def _begin(self, cur: SqlCursor) -> tuple[Revision, Validator]:
        """Allocate the next revision (taking the write lock) and load the current validator."""
        head, policy_revision = self._exec(
            cur, "UPDATE store_state SET head = head + 1 RETURNING head, policy_revision"
        ).fetchone()
        self._exec(
            cur, "INSERT INTO revisions (revision, created_at) VALUES (?, ?)", (head, self._now())
        )
        return head, self._validator_for(cur, policy_revision)

    def _validator_for(self, cur: SqlCursor, policy_revision: Revision) -> Validator:
        cached_revision, validator = self._validator
        if cached_revision != policy_revision:
            row = self._exec(
                cur, "SELECT schema_json FROM policies WHERE revision = ?", (policy_revision,)
            ).fetchone()
            validator = Validator(schema_from_json(row[0]) if row else None)
            self._validator = (policy_revision, validator)
        return validator

    def _select_at(self, data: str, params: Sequence[Any], revision: Revision) -> list[Row]:
        """Run ``data`` (a SELECT of ``COLUMNS``) and check ``revision`` against head and oldest.

        The check and the rows come from one statement, so from one snapshot.
        """
        with self._read() as cur:
            rows = self._exec(cur, STATE.format(data=data) + " " + ORDER, params).fetchall()
        self._check_revision(revision, rows[0][0], rows[0][1])
        return [r[2:] for r in rows if r[2] is not None]

    def _fetch_one(self, text: str, params: Sequence[Any]) -> Row:
        """The one row of a read statement; SQLite flattens it for point reads."""
        with self._read() as cur:
            row: Row = self._exec(cur, text, params).fetchone()
        return row

    def _check_revision(
        self, revision: Revision, head: Revision, oldest: Revision, field: str = "revision"
    ) -> None:
        if revision > head:
            raise RevisionUnavailableError(
                f"revision {revision} is in the future (head is {head})", field=field
            )
        if revision < oldest:
            raise RevisionUnavailableError(
                f"revision {revision} was garbage-collected (oldest kept is {oldest})",
                field=field,
            )

    # ---- revisions -----------------------------------------------------------------------------

    def _load_identity(self) -> None:
        with self._read() as cur:
            self.identity = bytes(self._exec(cur, "SELECT store_id FROM store_state").fetchone()[0])

    def head_revision(self) -> Revision:
        """The newest committed revision."""
        with self._read() as cur:
            head: Revision = self._exec(cur, "SELECT head FROM store_state").fetchone()[0]
        return head

    def revision_stamp(self, revision: Revision) -> int | None:
        """When ``revision`` committed, from its ``revisions`` row (see ChangeLog)."""
        with self._read() as cur:
            row = self._exec(
                cur, "SELECT created_at FROM revisions WHERE revision = ?", (revision,)
            ).fetchone()
        return None if row is None else int(row[0])

    # ---- writes --------------------------------------------------------------------------------

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> Revision:
        """Apply a batch atomically (see Writer.write)."""
        check_preconditions(preconditions)
        with self._write() as cur:
            return self._write_in(cur, updates, preconditions)

    def _write_in(
        self,
        cur: SqlCursor,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition],
    ) -> Revision:
        revision, validator = self._begin(cur)
        validator.check_updates(updates)
        now = self._now()
        for p in preconditions:
            self._check_precondition(cur, p, now)
        for i, update in enumerate(updates):
            self._apply(cur, i, update, revision, now)
        return revision

    def _check_precondition(self, cur: SqlCursor, p: Precondition, now: int) -> None:
        where, params = filter_sql(p.filter)
        found = self._exec(
            cur,
            f"SELECT EXISTS (SELECT 1 FROM relationships WHERE {where} AND {LIVE_NOW})",
            (*params, now),
        ).fetchone()[0]
        if bool(found) != (p.kind is PreconditionKind.MUST_MATCH):
            raise PreconditionFailedError(f"precondition failed: {p}", field="preconditions")

    def _apply(
        self, cur: SqlCursor, i: int, update: RelationshipUpdate, revision: Revision, now: int
    ) -> None:
        rel = update.relationship
        key = rel.key
        live = self._exec(cur, SELECT_LIVE, key).fetchone()
        visible = live is not None and (live[3] is None or live[3] > now)
        op = update.operation
        if op is Operation.CREATE and visible:
            raise AlreadyExistsError(
                f"updates[{i}]: {rel} already exists", field=f"updates[{i}].relationship"
            )
        if op is Operation.DELETE and not visible:
            return
        if (
            op is Operation.TOUCH
            and visible
            and live[1] == rel.caveat_name
            and live[2] == dump_context(rel.caveat_context)
            and live[3] == to_micros(rel.expires_at)
        ):
            return
        if live is not None:
            self._exec(cur, RETIRE, (revision, *key, live[0]))
        if op is not Operation.DELETE:
            self._exec(cur, INSERT, row_values(rel, revision))

    def delete(
        self, relationship_filter: RelationshipFilter, limit: int | None = None
    ) -> tuple[Revision, int]:
        """Delete live relationships matching the filter (see Writer.delete)."""
        self._check_delete(relationship_filter, limit)
        with self._write() as cur:
            return self._delete_in(cur, relationship_filter, limit)

    @staticmethod
    def _check_delete(relationship_filter: RelationshipFilter, limit: int | None) -> None:
        check_limit(limit)
        relationship_filter.validate()
        if relationship_filter.is_empty():
            raise InvalidRequestError("delete needs a non-empty filter", field="filter")

    def _delete_in(
        self, cur: SqlCursor, relationship_filter: RelationshipFilter, limit: int | None
    ) -> tuple[Revision, int]:
        where, params = filter_sql(relationship_filter)
        revision, _ = self._begin(cur)
        now = self._now()
        if limit is None:
            count = int(
                self._exec(
                    cur,
                    f"UPDATE relationships SET deleted_revision = ? WHERE {where} AND {LIVE_NOW}",
                    (revision, *params, now),
                ).rowcount
            )
        else:
            rows = self._exec(
                cur,
                f"SELECT {KEY}, created_revision FROM relationships WHERE {where} "
                f"AND {LIVE_NOW} ORDER BY {KEY} LIMIT ?",
                (*params, now, limit),
            ).fetchall()
            for row in rows:
                self._exec(cur, RETIRE, (revision, *row))
            count = len(rows)
        if count == 0:
            return self._give_back(cur, revision), 0
        return revision, count

    def _give_back(self, cur: SqlCursor, revision: Revision) -> Revision:
        """Undo ``_begin`` for a write that changed nothing; returns the head it leaves.

        A delete that matched nothing makes no revision (watchers and caches see
        none); the write lock is still held, so no other writer took a number since.
        """
        self._exec(cur, "DELETE FROM revisions WHERE revision = ?", (revision,))
        self._exec(cur, "UPDATE store_state SET head = head - 1")
        return revision - 1

    def import_relationships(self, relationships: Iterable[Relationship]) -> Revision:
        """Bulk-create relationships in one transaction (see Writer.import_relationships)."""
        with self._write() as cur:
            return self._import_in(cur, relationships)

    def _finish_import(self, cur: SqlCursor, revision: Revision, now: int) -> None:
        """After importing into a non-empty store: refuse live duplicates, retire expired rows."""
        self._refuse_clashes(cur, revision, now)
        self._retire_expired(cur, revision, now)

    def _refuse_clashes(
        self, cur: SqlCursor, revision: Revision, now: int, since: Revision = -1
    ) -> None:
        """Raise AlreadyExistsError if a row imported at ``revision`` is live already.

        ``since`` limits the search to rows created after that revision (the
        ones a check made earlier in the transaction could not have seen).
        """
        clash = self._exec(
            cur,
            f"SELECT {', '.join('n.' + c for c in KEY_COLUMNS)} FROM relationships n "
            f"JOIN relationships o ON {' AND '.join(f'o.{c} = n.{c}' for c in KEY_COLUMNS)} "
            f"AND o.created_revision < n.created_revision AND o.created_revision > ? "
            f"WHERE n.created_revision = ? AND o.deleted_revision = {LIVE} "
            f"AND (o.expires_at IS NULL OR o.expires_at > ?) LIMIT 1",
            (since, revision, now),
        ).fetchone()
        if clash is not None:
            rel = Relationship.from_key(clash)
            raise AlreadyExistsError(f"{rel} already exists", field="relationships")

    def _retire_expired(self, cur: SqlCursor, revision: Revision, now: int) -> None:
        """Mark deleted at ``revision`` the expired live rows that rows imported there replace."""
        self._exec(
            cur,
            f"UPDATE relationships SET deleted_revision = ? "
            f"WHERE deleted_revision = {LIVE} AND created_revision < ? AND expires_at <= ? "
            f"AND EXISTS (SELECT 1 FROM relationships n WHERE "
            f"{' AND '.join(f'n.{c} = relationships.{c}' for c in KEY_COLUMNS)} "
            f"AND n.created_revision = ?)",
            (revision, revision, now, revision),
        )

    # ---- records from the network -------------------------------------------------------------

    def apply_records(
        self, source: str, changes: Sequence[records.Change], position: int | None
    ) -> records.AppliedRecords:
        """Apply record changes, their links and ``source``'s position atomically (RecordSink)."""
        uris, prefixes = records.uris_of(changes)
        with self._write() as cur:
            revision, validator = self._begin(cur)
            stored = self._stored_records(cur, uris, prefixes)
            planned = records.plan(changes, stored)
            rows = planned.records
            if rows:
                self._exec_many(
                    cur,
                    (
                        "INSERT INTO ingest_records (record_uri, rev, live) VALUES (?, ?, ?) "
                        "ON CONFLICT (record_uri) DO UPDATE SET rev = excluded.rev, "
                        "live = excluded.live"
                    ),
                    [(uri, state.rev, state.live) for uri, state in rows.items()],
                )
                self._exec_many(
                    cur, "DELETE FROM ingest_links WHERE record_uri = ?", [(uri,) for uri in rows]
                )
                self._exec_many(
                    cur,
                    f"INSERT INTO ingest_links (record_uri, {KEY}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(uri, *key) for uri, state in rows.items() for key in state.keys],
                )
            updates = []
            for key in sorted(planned.keys):
                linked = (
                    key in planned.linked
                    or self._exec(
                        cur, f"SELECT EXISTS (SELECT 1 FROM ingest_links WHERE {KEY_MATCH})", key
                    ).fetchone()[0]
                )
                rel = planned.relationships.get(key) or Relationship.from_key(key)
                op = Operation.TOUCH if linked else Operation.DELETE
                updates.append(RelationshipUpdate(op, rel))
            validator.check_updates(updates)
            now = self._now()
            for i, update in enumerate(updates):
                self._apply(cur, i, update, revision, now)
            if position is not None:
                self._exec(
                    cur,
                    "INSERT INTO ingest_positions (source, position, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET position = excluded.position, "
                    "updated_at = excluded.updated_at",
                    (source, position, now),
                )
        return records.AppliedRecords(revision, planned.applied, planned.stale)

    def _stored_records(
        self, cur: SqlCursor, uris: list[str], prefixes: list[str]
    ) -> dict[str, records.RecordState]:
        """The stored state of the records named by URI or under a repo prefix."""
        found: dict[str, tuple[str, bool]] = {}
        links: dict[str, set[RelationshipKey]] = {}
        queries: list[tuple[str, Sequence[Any]]] = []
        if uris:
            ids_sql, ids_param = self._in_ids("record_uri", uris)
            queries.append((ids_sql, (ids_param,)))
        for prefix in prefixes:
            queries.append(("record_uri >= ? AND record_uri < ?", records.repo_range(prefix)))
        for where, params in queries:
            for uri, rev, live in self._exec(
                cur, f"SELECT record_uri, rev, live FROM ingest_records WHERE {where}", params
            ).fetchall():
                found[uri] = (rev, bool(live))
            for row in self._exec(
                cur, f"SELECT record_uri, {KEY} FROM ingest_links WHERE {where}", params
            ).fetchall():
                links.setdefault(row[0], set()).add(
                    (row[1], row[2], row[3], row[4], row[5], row[6])
                )
        return {
            uri: records.RecordState(rev, live, frozenset(links.get(uri, ())))
            for uri, (rev, live) in found.items()
        }

    def ingest_position(self, source: str) -> int | None:
        """The position last stored for ``source`` (RecordSink)."""
        with self._read() as cur:
            row = self._exec(
                cur, "SELECT position FROM ingest_positions WHERE source = ?", (source,)
            ).fetchone()
        return None if row is None else int(row[0])

    # ---- reads ---------------------------------------------------------------------------------

    def snapshot(self, revision: Revision | None = None) -> SnapshotReader:
        """A reader at ``revision`` (see Store.snapshot)."""
        return SqlSnapshot(self, self.head_revision() if revision is None else revision)

    # ---- policy --------------------------------------------------------------------------------

    def write_policy(self, text: str, schema: Schema) -> Revision:
        """Store a new policy unless it orphans live relationships or their context parameters."""
        with self._write() as cur:
            return self._write_policy_in(cur, text, schema)

    def _write_policy_in(self, cur: SqlCursor, text: str, schema: Schema) -> Revision:
        revision, validator = self._begin(cur)
        blockers = self._blockers(cur, validator.schema, schema)
        if blockers:
            raise PolicyChangeRefusedError(
                "the new policy would orphan stored relationships", blockers
            )
        self._exec(
            cur,
            "INSERT INTO policies (revision, text, schema_json) VALUES (?, ?, ?)",
            (revision, text, schema_to_json(schema)),
        )
        self._exec(cur, "UPDATE store_state SET policy_revision = ?", (revision,))
        return revision

    def policy_blockers(self, schema: Schema) -> list[str]:
        """What ``write_policy(…, schema)`` would be refused for now, written nowhere."""
        with self._read() as cur:
            row = self._exec(cur, "SELECT policy_revision FROM store_state").fetchone()
            return self._blockers(cur, self._validator_for(cur, row[0]).schema, schema)

    def _blockers(self, cur: SqlCursor, old: Schema | None, schema: Schema) -> list[str]:
        now = self._now()
        rows = self._exec(
            cur,
            f"SELECT resource_type, relation, subject_type, subject_relation, "
            f"subject_id = '*', COALESCE(caveat_name, ''), expires_at IS NOT NULL, COUNT(*) "
            f"FROM relationships WHERE {LIVE_NOW} GROUP BY 1, 2, 3, 4, 5, 6, 7",
            (now,),
        ).fetchall()
        shapes = [
            (Shape(r[0], r[1], r[2], r[3], bool(r[4]), r[5], bool(r[6])), int(r[7])) for r in rows
        ]
        keys = self._exec(
            cur,
            f"SELECT caveat_name, k.key, COUNT(*) FROM {self._context_keys_from()} "
            f"WHERE caveat_name IS NOT NULL AND {LIVE_NOW} GROUP BY 1, 2",
            (now,),
        ).fetchall()
        return orphan_blockers(schema, shapes) + context_blockers(
            old, schema, ((r[0], r[1], int(r[2])) for r in keys)
        )

    # ---- group commit --------------------------------------------------------------------------

    def write_group(self, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """Apply each request in its own savepoint of one transaction (see Writer.write_group).

        A request that raises a PolicydError is rolled back to its savepoint
        (and so gives its revision back: the next request takes it), and the
        error takes its place in the result. Any other failure is the store's:
        the transaction rolls back whole and the error propagates.
        """
        if not requests:
            return []
        try:
            with self._write() as cur:
                return self._group_in(cur, requests)
        except BaseException:
            # A later request may have cached the validator of a policy written earlier in
            # this group; that policy revision was never committed, so forget it.
            self._validator = (-1, Validator(None))
            raise

    def _group_in(self, cur: SqlCursor, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """Apply each request in its own savepoint of the open transaction ``cur``."""
        outcomes: list[Outcome] = []
        for request in requests:
            self._exec(cur, "SAVEPOINT request")
            try:
                outcomes.append(self._apply_request(cur, request))
            except StoreError:
                raise
            except PolicydError as e:
                self._exec(cur, "ROLLBACK TO SAVEPOINT request")
                outcomes.append(e)
            self._exec(cur, "RELEASE SAVEPOINT request")
        return outcomes

    def _apply_request(
        self, cur: SqlCursor, request: GroupRequest
    ) -> Revision | tuple[Revision, int]:
        match request:
            case WriteRequest():
                check_preconditions(request.preconditions)
                return self._write_in(cur, request.updates, request.preconditions)
            case DeleteRequest():
                self._check_delete(request.filter, request.limit)
                return self._delete_in(cur, request.filter, request.limit)
            case PolicyRequest():
                return self._write_policy_in(cur, request.text, request.schema)
            case ImportRequest():
                return self._import_in(cur, request.relationships)
            case _:
                assert_never(request)

    # ---- change log ----------------------------------------------------------------------------

    def changes(
        self, after: Revision, limit: int = DEFAULT_CHANGES_LIMIT, upto: Revision | None = None
    ) -> list[ChangeEvent]:
        """Change-log events after ``after`` (see ChangeLog.changes)."""
        check_limit(limit)
        events = self._changes(after, upto, limit)
        if len(events) >= limit:
            last = events[-1].revision
            events = [e for e in events if e.revision < last]
            events.extend(self._changes(last - 1, last, None))
        return events

    def _changes(
        self, after: Revision, upto: Revision | None, limit: int | None
    ) -> list[ChangeEvent]:
        """One read of the log; without ``upto``, up to the head read in the same statement.

        Never past the head: rows above it may be committed while an older
        revision is still open (PostgreSQL numbers revisions by transaction id,
        postgres/revisions.py), and a reader that moved past them would never
        see that older revision when it commits.
        """
        same_key = " AND ".join(f"n.{c} = o.{c}" for c in KEY_COLUMNS)
        top = "(SELECT head FROM store_state)" if upto is None else "?"
        blank = ", ".join(f"'' AS {c}" for c in KEY_COLUMNS)
        data = (
            f"SELECT revision AS rev, 0 AS kind, {blank}, NULL AS caveat_name, "
            f"NULL AS caveat_context, NULL AS expires_at FROM policies "
            f"WHERE revision > ? AND revision <= {top} "
            f"UNION ALL SELECT o.deleted_revision, 1, {', '.join('o.' + c for c in KEY_COLUMNS)}, "
            f"o.caveat_name, o.caveat_context, o.expires_at FROM relationships o "
            f"WHERE o.deleted_revision > ? AND o.deleted_revision <= {top} "
            f"AND o.deleted_revision < {LIVE} AND NOT EXISTS (SELECT 1 FROM relationships n "
            f"WHERE {same_key} AND n.created_revision = o.deleted_revision) "
            f"UNION ALL SELECT created_revision, 2, {COLUMNS} FROM relationships "
            f"WHERE created_revision > ? AND created_revision <= {top} "
            f"ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
        )
        bounds: tuple[int, ...] = (after,) * 3 if upto is None else (after, upto) * 3
        if limit is not None:
            data += " LIMIT ?"
            bounds += (limit,)
        with self._read() as cur:
            rows = self._exec(
                cur,
                f"SELECT s.head, s.oldest, d.* FROM store_state s LEFT JOIN ({data}) d ON 1 = 1 "
                f"ORDER BY d.rev, d.kind, {', '.join('d.' + c for c in KEY_COLUMNS)}",
                bounds,
            ).fetchall()
        self._check_revision(after, rows[0][0], rows[0][1], field="after")
        events = []
        for r in rows:
            if r[2] is None:
                continue
            revision, kind = r[2], r[3]
            if kind == 0:
                events.append(ChangeEvent(revision, ChangeKind.POLICY))
            else:
                change = ChangeKind.DELETE if kind == 1 else ChangeKind.TOUCH
                events.append(ChangeEvent(revision, change, relationship_from_row(r[4:])))
        return events

    # ---- garbage collection --------------------------------------------------------------------

    def hold(self, revision: Revision, ttl: timedelta = DEFAULT_HOLD_TTL) -> RevisionHold:
        """Keep ``gc`` away from what ``revision`` sees (see Retention.hold)."""
        hold_id = uuid.uuid4().hex
        lease = int(ttl.total_seconds() * 1_000_000)
        with self._write() as cur:
            head, oldest = self._exec(cur, self._lock_state_sql()).fetchone()
            self._check_revision(revision, head, oldest)
            self._exec(
                cur,
                "INSERT INTO revision_holds (id, revision, expires_at) VALUES (?, ?, ?)",
                (hold_id, revision, self._now() + lease),
            )

        def release() -> None:
            with self._write() as cur:
                self._exec(cur, "DELETE FROM revision_holds WHERE id = ?", (hold_id,))

        def renew() -> None:
            with self._write() as cur:
                self._exec(
                    cur,
                    "UPDATE revision_holds SET expires_at = ? WHERE id = ?",
                    (self._now() + lease, hold_id),
                )

        return RevisionHold(revision, release, renew)

    @contextlib.contextmanager
    def _export_hold(self, revision: Revision) -> Iterator[None]:
        """Hold ``revision`` while an export pages through it, when the store can take writes.

        A store that cannot take writes (a full disk) cannot collect garbage
        either, and every page checks its revision against the oldest kept, so
        an export there goes on without the hold rather than fail the start-up
        that loads the index: at worst a collection that started meanwhile ends
        it with RevisionUnavailableError, never with a partial answer.
        """
        try:
            hold = self.hold(revision)
        except StoreUnwritableError:
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(StoreUnwritableError):  # the lease lapses by itself
                hold.release()

    def _lock_state_sql(self) -> str:
        """Read head and oldest, locking out GC until commit (PostgreSQL adds FOR UPDATE)."""
        return "SELECT head, oldest FROM store_state"

    def gc(self, window: timedelta = DEFAULT_GC_WINDOW) -> GcResult:
        """Collect old deleted rows and expired rows (see Retention.gc)."""
        now = self._now()
        cutoff = now - int(window.total_seconds() * 1_000_000)
        with self._write() as cur:
            _, oldest = self._exec(cur, self._lock_state_sql()).fetchone()
            self._exec(cur, "DELETE FROM revision_holds WHERE expires_at <= ?", (now,))
            point = self._exec(
                cur,
                "SELECT MAX(revision) FROM revisions WHERE created_at <= ? "
                "AND revision <= (SELECT head FROM store_state)",
                (cutoff,),
            ).fetchone()[0]
            held = self._exec(cur, "SELECT MIN(revision) FROM revision_holds").fetchone()[0]
            point = oldest if point is None else point
            if held is not None:
                point = min(point, held)
            point = max(point, oldest)
            removed = self._exec(
                cur,
                f"DELETE FROM relationships WHERE deleted_revision <= ? "
                f"AND deleted_revision < {LIVE}",
                (point,),
            ).rowcount
            removed += self._exec(
                cur,
                "DELETE FROM relationships WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).rowcount
            self._exec(cur, "DELETE FROM revisions WHERE revision < ?", (point,))
            self._exec(cur, "UPDATE store_state SET oldest = ?", (point,))
        return GcResult(int(removed), point)


class SqlSnapshot:
    """SqlStore's SnapshotReader: every read is one statement that also checks the revision."""

    def __init__(self, store: SqlStore, revision: Revision) -> None:
        self._store = store
        self.revision = revision

    def get(self, key: RelationshipKey) -> Relationship | None:
        """The live relationship with this key (the point read)."""
        store, at = self._store, self.revision
        row = store._fetch_one(GET, (*key, at, at, store._now()))
        if not row[1] <= at <= row[0]:
            store._check_revision(at, row[0], row[1])
        return None if row[2] is None else relationship_from_row(row[2:])

    def subjects_of(
        self,
        resource_type: str,
        resource_ids: Collection[str],
        relation: str,
        *,
        subject_type: str | None = None,
    ) -> list[Relationship]:
        """Relationships of the given resources and relation, in key order, in one query."""
        store, at = self._store, self.revision
        ids_sql, ids_param = store._in_ids("resource_id", resource_ids)
        where = f"resource_type = ? AND {ids_sql} AND relation = ?"
        params: list[Any] = [resource_type, ids_param, relation]
        if subject_type is not None:
            where += " AND subject_type = ?"
            params.append(subject_type)
        data = f"SELECT {COLUMNS} FROM relationships WHERE {where} AND {VISIBLE}"
        rows = store._select_at(data, (*params, at, at, store._now()), at)
        return [relationship_from_row(r) for r in rows]

    def resources_of(
        self,
        resource_type: str,
        relation: str,
        *,
        subject_type: str,
        subject_ids: Collection[str],
        subject_relation: str | None = None,
    ) -> list[Relationship]:
        """Relationships to the given subjects, by subject id then resource id, in one query."""
        store, at = self._store, self.revision
        ids_sql, ids_param = store._in_ids("subject_id", subject_ids)
        data = (
            f"SELECT {COLUMNS} FROM relationships WHERE subject_type = ? AND {ids_sql} "
            f"AND subject_relation = ? AND resource_type = ? AND relation = ? AND {VISIBLE}"
        )
        params = (subject_type, ids_param, subject_relation or "", resource_type, relation)
        rows = store._select_at(data, (*params, at, at, store._now()), at)
        found = [relationship_from_row(r) for r in rows]
        found.sort(key=lambda r: (r.subject.id, r.resource.id))
        return found

    def read(
        self,
        relationship_filter: RelationshipFilter,
        cursor: Cursor | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ReadPage:
        """One page of matching relationships in key order (see SnapshotReader.read)."""
        check_read(relationship_filter, cursor, limit, self.revision)
        store, at = self._store, self.revision
        where, params = filter_sql(relationship_filter)
        if cursor is not None:
            where += f" AND ({KEY}) > (?, ?, ?, ?, ?, ?)"
            params.extend(cursor.after)
        data = (
            f"SELECT {COLUMNS} FROM relationships WHERE {VISIBLE} AND {where} "
            f"ORDER BY {KEY} LIMIT ?"
        )
        rows = store._select_at(data, (at, at, store._now(), *params, limit + 1), at)
        page = tuple(relationship_from_row(r) for r in rows[:limit])
        next_cursor = Cursor(at, page[-1].key) if len(rows) > limit else None
        return ReadPage(page, at, next_cursor)

    def export_rows(self) -> Iterator[ExportRow]:
        """Every live relationship as raw rows, in key order, paged under a hold."""
        store, at = self._store, self.revision
        page_size = 50_000
        data = (
            f"SELECT {COLUMNS} FROM relationships WHERE {VISIBLE} AND ({KEY}) > "
            f"(?, ?, ?, ?, ?, ?) ORDER BY {KEY} LIMIT ?"
        )
        after: tuple[str, ...] = ("", "", "", "", "", "")
        with store._export_hold(at):
            while True:
                rows = store._select_at(data, (at, at, store._now(), *after, page_size), at)
                for row in rows:
                    yield (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])
                if len(rows) < page_size:
                    return
                after = tuple(rows[-1][:6])

    def export_relationships(self) -> Iterator[Relationship]:
        """Every live relationship in key order, paged under a hold."""
        with self._store._export_hold(self.revision):
            cursor: Cursor | None = None
            everything = RelationshipFilter()
            while True:
                page = self.read(everything, cursor, limit=10_000)
                yield from page.relationships
                if page.cursor is None:
                    return
                cursor = page.cursor

    def read_policy(self) -> StoredPolicy | None:
        """The policy in force at this revision."""
        store, at = self._store, self.revision
        row = store._fetch_one(
            "SELECT s.head, s.oldest, p.revision, p.text, p.schema_json FROM store_state s "
            "LEFT JOIN (SELECT revision, text, schema_json FROM policies WHERE revision <= ? "
            "ORDER BY revision DESC LIMIT 1) p ON 1 = 1",
            (at,),
        )
        store._check_revision(at, row[0], row[1])
        if row[2] is None:
            return None
        return StoredPolicy(row[3], schema_from_json(row[4]), row[2])
