"""Package store.postgres.store holds PostgresStore: the Store contract on PostgreSQL via psycopg 3.

Any number of policyd replicas may share one database. A write numbers its
revisions by its transaction id (``revisions.py``), touching no shared row
before it commits, and is acknowledged once the head (``store_state.head``,
moved only to a point below every write still open) has reached it, so a
reader who sees revision R sees every write at or below R. A plain write (no
preconditions) shares the write gate with other plain writes (see
``_write_plain``); any other write holds it alone. Reads run in autocommit,
one statement each (see sqlcommon), on pooled connections.

Nothing waits on PostgreSQL without a bound (``PgTimeouts``): connecting,
every statement, every lock wait and a transaction left idle each have a
timeout set on the session, and a wait for a pooled connection is bounded
by the call's deadline (``CALL_DEADLINE``). When a connection breaks
(PostgreSQL stopped, the network dropped), the store marks PostgreSQL
unreachable and fails every call at once with StoreError (UNAVAILABLE)
instead of queueing it on a pool that cannot fill; a probe, at most one per
``probe_interval``, lets calls through again as soon as a connection opens.

It runs past 500 lines because what differs on PostgreSQL (connections and
their timeouts, writes numbered by transaction id, COPY imports publishing
under the gate, reads on a standby) all hangs on the same connection handling.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from policyd.errors import AlreadyExistsError, InvalidRequestError, PolicydError, StoreError
from policyd.filters import Precondition
from policyd.relationship import Relationship, RelationshipKey, RelationshipUpdate
from policyd.store.base import (
    LIVE,
    Clock,
    GroupRequest,
    Outcome,
    Revision,
    SnapshotReader,
    WriteRequest,
    wait_bound,
)
from policyd.store.postgres.migrations import SECONDARY_INDEXES, migrate
from policyd.store.postgres.revisions import (
    ADVANCE_MESSAGE,
    FINISH_PLAIN_CALL,
    LOCK_PLAIN_CALL,
    MAX_ORDINAL,
    NUMBER_ALONE,
    XID_SHIFT,
    last_row,
    literally,
)
from policyd.store.sqlcommon import (
    ATTRS,
    COLUMNS,
    KEY,
    KEY_COLUMNS,
    ROW_COLUMNS,
    Row,
    SqlCursor,
    SqlSnapshot,
    SqlStore,
    relationship_from_row,
    row_values,
)
from policyd.store.validation import Validator

LOG = logging.getLogger("policyd.store")

# ASCII only, at most PostgreSQL's 63-byte identifier limit: the name also goes into a
# ``search_path`` option, where anything else would need quoting rules of its own.
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_]{1,63}")


@dataclass(frozen=True, slots=True)
class PgTimeouts:
    """How long PostgreSQL work may take, in seconds; each one is a PostgreSQL setting.

    ``connect`` is libpq's ``connect_timeout`` (whole seconds, at least 1 in
    libpq; 2 here), ``statement``, ``lock`` and ``idle_in_transaction`` are the
    session's ``statement_timeout``, ``lock_timeout`` and
    ``idle_in_transaction_session_timeout``: a query that runs away, a write
    queued behind a stuck writer and a paused process holding a transaction open
    all end. ``bulk_statement`` replaces ``statement`` in a bulk import, whose
    COPY runs as long as the input lasts. ``pool`` bounds the wait for a pooled
    connection (less when the call's deadline is nearer); ``probe_interval`` is
    how often an unreachable PostgreSQL is tried again.
    """

    connect: int = 2
    statement: float = 30.0
    bulk_statement: float = 600.0
    lock: float = 5.0
    idle_in_transaction: float = 10.0
    pool: float = 5.0
    probe_interval: float = 0.25

    def options(self) -> str:
        """The libpq ``options`` that set the session timeouts."""
        return (
            f"-c statement_timeout={int(self.statement * 1000)} "
            f"-c lock_timeout={int(self.lock * 1000)} "
            f"-c idle_in_transaction_session_timeout={int(self.idle_in_transaction * 1000)}"
        )


IMPORT_RESERVE = 1 << 24
"""How many transaction ids above the current ones an import reserves its revision at:
writes that commit while it loads number theirs below (16.7 million transactions)."""

_POLICY_RETRIES = 3
"""How often a plain write starts again because a policy change or publish committed as it
waited for the gate."""

_HEAD_WAIT = (0.00025, 0.002)
"""First and longest pause between a writer's looks at the head while an older write is open."""

_ADVANCE_EVERY = 4
"""While it waits, a writer moves the head itself on every 4th look (an ``ADVANCE`` costs about
0.35 ms of PostgreSQL's time; reading the head, a tenth of that). The older write it waits for
moves the head past both when it commits; a writer whose own advance was skipped (another
session held the row) or whose elder died must move it itself."""


_PUBLISH = f"""
WITH state AS (
    SELECT s.revision_offset + (pg_snapshot_xmax(pg_current_snapshot())::text::bigint
        << {XID_SHIFT}) AS numbered, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid
    FROM store_state s
),
target AS (SELECT CASE WHEN numbered <= ?::bigint THEN ?::bigint ELSE numbered END AS revision,
    xid FROM state)
UPDATE store_state SET head = target.revision,
    revision_offset = greatest(revision_offset, target.revision + 1 - (target.xid << {XID_SHIFT}))
FROM target RETURNING target.revision, store_state.policy_revision
"""
"""An import's publish, run holding the gate alone: the head moves to the reserved revision,
or, if writes numbered at or past it meanwhile (every transaction below the snapshot's xmax
numbered below ``numbered``), to just above them; the offset moves so that writes after it
number above it."""


def _one_row(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The one row of a statement over ``store_state``; none means a damaged schema."""
    row = cursor.fetchone()
    if row is None:
        raise StoreError("store_state has no row: the schema is damaged")
    return row


@dataclass
class _Numbering:
    """How an open write transaction numbers its requests' revisions (see revisions.py)."""

    base: Revision
    policy_revision: Revision
    offset: Revision
    """The offset a plain write read (checked again as it ends); unused by one alone."""
    alone: bool
    """Whether the transaction holds the gate alone (records each revision as it takes it)."""
    taken: int = 0

    def next(self) -> Revision:
        if self.taken == MAX_ORDINAL:
            raise StoreError(f"one transaction numbers at most {MAX_ORDINAL} revisions")
        self.taken += 1
        return self.base + self.taken

    @property
    def last(self) -> Revision:
        return self.base + self.taken


def _one_row_of_last(cursor: psycopg.Cursor[tuple[Any, ...]]) -> Any:
    """The first value of the last result with rows, of a message of several statements."""
    row = last_row(cursor)
    if row is None:
        raise StoreError("the head's advance returned no row")
    return row[0]


def _lock_id(*parts: str) -> bytes:
    """Eight bytes naming an advisory lock, from the store's schema and what is locked."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()


# A connection that dies without a word (a host gone, a cable pulled) is noticed by TCP
# keepalives within about idle + interval * count seconds, not the kernel's two hours.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}


class _PolicyMoved(Exception):
    """A policy change or publish committed while a plain write waited for the gate: again."""


class _RecoveryConflict(StoreError):
    """A hot standby cancelled a read because it held up WAL replay; the primary can answer it."""


_RECOVERY_CONFLICTS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
"""What a hot standby cancels a query with when it conflicts with replay ("canceling statement
due to conflict with recovery"): SQLSTATE 40001, or 40P01 for a buffer-pin deadlock with it."""


class _Server:
    """One PostgreSQL server: its connection pool, and whether it answers.

    When a connection breaks (PostgreSQL stopped, the network dropped), the
    server is marked unreachable and every call fails at once with StoreError
    (UNAVAILABLE) instead of queueing on a pool that cannot fill; a probe, at
    most one per ``probe_interval``, lets calls through again as soon as a
    connection opens. On a ``standby``, a query cancelled for a conflict with
    replay raises _RecoveryConflict: the server is up, the read can go to the
    primary.
    """

    def __init__(
        self,
        dsn: str,
        connect_kwargs: dict[str, Any],
        timeouts: PgTimeouts,
        min_connections: int,
        max_connections: int,
        standby: bool = False,
    ) -> None:
        self.dsn = dsn
        self.standby = standby
        self._connect_kwargs = connect_kwargs
        self._timeouts = timeouts
        self.unreachable: str | None = None
        """Why PostgreSQL is taken to be unreachable, or None while it answers."""
        self._probed_at = 0.0
        self._probe_lock = threading.Lock()
        self.pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn,
            min_size=min_connections,
            max_size=max_connections,
            timeout=timeouts.pool,
            kwargs=connect_kwargs,
            open=True,
        )

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection, waiting no longer than the pool bound or the call's deadline.

        psycopg's errors become policyd's: StoreError (UNAVAILABLE) for a
        server that is down, slow or out of connections.
        """
        if self.unreachable is not None and not self.probe():
            raise StoreError(f"PostgreSQL is unreachable: {self.unreachable}")
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            with self.pool.connection(timeout=wait_bound(self._timeouts.pool)) as conn:
                yield conn
        except PoolTimeout as e:
            if self.unreachable is None and not self.probe(force=True):
                raise StoreError(f"PostgreSQL is unreachable: {self.unreachable}") from e
            raise StoreError(f"no PostgreSQL connection came free in time: {e}") from e
        except psycopg.errors.UniqueViolation as e:
            raise AlreadyExistsError(f"relationship already exists: {e}") from e
        except psycopg.errors.LockNotAvailable as e:
            raise StoreError(f"PostgreSQL lock wait timed out (lock_timeout): {e}") from e
        except psycopg.errors.QueryCanceled as e:
            raise StoreError(f"PostgreSQL statement timed out or was cancelled: {e}") from e
        except psycopg.Error as e:
            if self.standby and isinstance(e, _RECOVERY_CONFLICTS):
                raise _RecoveryConflict(f"the standby cancelled a read: {e}") from e
            if conn is not None and conn.broken:
                self.unreachable = str(e).strip() or "the connection broke"
                self._probed_at = time.monotonic()
            raise StoreError(f"PostgreSQL failed: {e}") from e

    def probe(self, force: bool = False) -> bool:
        """Whether PostgreSQL takes a new connection; tried at most once per probe interval.

        Callers that find a probe under way or too recent get the last verdict
        at once, so an outage costs each call no wait at all.
        """
        if not force and time.monotonic() - self._probed_at < self._timeouts.probe_interval:
            return self.unreachable is None
        if not self._probe_lock.acquire(blocking=False):
            return self.unreachable is None
        try:
            self._probed_at = time.monotonic()
            try:
                psycopg.connect(self.dsn, **self._connect_kwargs).close()
            except psycopg.Error as e:
                self.unreachable = str(e).strip() or "cannot connect"
                return False
            if self.unreachable is not None:
                self.unreachable = None
                self.pool.check()  # drop the pooled connections that broke meanwhile
            return True
        finally:
            self._probe_lock.release()

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()


class PostgresStore(SqlStore):
    """The scale-out backend: relationships, policy and change log in PostgreSQL."""

    def __init__(
        self,
        dsn: str,
        *,
        schema_name: str = "public",
        clock: Clock = time.time,
        min_connections: int = 1,
        max_connections: int = 10,
        timeouts: PgTimeouts | None = None,
        read_dsn: str | None = None,
        replica_wait: float = 1.0,
    ) -> None:
        """Connect to ``dsn`` and migrate the tables in ``schema_name``.

        Args:
            dsn: a libpq connection string or ``postgresql://`` URL.
            schema_name: the PostgreSQL schema holding policyd's tables (created
                if missing), so several stores can share one database.
            clock: the time source for expiry, holds and GC.
            min_connections: connections the pool keeps open.
            max_connections: connections the pool opens at most.
            timeouts: the connect, statement, lock, idle and pool timeouts.
            read_dsn: a hot standby of ``dsn`` (streaming replication) that serves
                snapshot reads; writes, the head and the change log stay on ``dsn``.
            replica_wait: seconds a snapshot read waits for the standby to replay
                its revision (less when the call's deadline is nearer) before it
                reads the primary instead.
        """
        super().__init__(clock)
        if not _SCHEMA_NAME.fullmatch(schema_name):
            raise InvalidRequestError(f"invalid schema name {schema_name!r}", field="schema")
        self._schema_name = schema_name
        self._dsn = dsn
        self._sql_cache: dict[str, str] = {}
        self.timeouts = timeouts = timeouts or PgTimeouts()
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": timeouts.connect,
            "options": f"-c search_path={schema_name} {timeouts.options()}",
            **_KEEPALIVES,
        }
        self._listener: psycopg.Connection[tuple[Any, ...]] | None = None
        self._numbering: dict[int, _Numbering] = {}
        """Connections in a write transaction that numbers revisions, and how it does."""
        self._gate = int.from_bytes(_lock_id(schema_name, "write gate"), "big", signed=True)
        """The advisory lock plain writes share and every other write takes alone."""
        self._replica_wait = replica_wait
        self.replica_reads = 0
        """Snapshots served by the standby (``read_dsn``)."""
        self.primary_fallbacks = 0
        """Snapshots the standby had not replayed in time, served by the primary instead."""
        self.conflict_retries = 0
        """Snapshot reads the standby cancelled for a conflict with replay, read on the primary."""
        self._replica_head = -1
        self._flushed_at = 0.0
        """When this store last made the primary flush its WAL (``_flush_primary``)."""
        self._primary_store = self
        """The store that reads from the primary: itself, or the one the standby's copy is of."""
        try:
            with psycopg.connect(dsn, **self._connect_kwargs) as conn:
                migrate(conn, schema_name)
            self._primary = _Server(
                dsn, self._connect_kwargs, timeouts, min_connections, max_connections
            )
            self._reads = self._primary
            self._replica: PostgresStore | None = None
            if read_dsn is not None:
                replica = copy.copy(self)
                replica._reads = _Server(
                    read_dsn,
                    self._connect_kwargs,
                    timeouts,
                    min_connections,
                    max_connections,
                    standby=True,
                )
                replica._primary_store = self
                self._replica = replica
        except psycopg.Error as e:
            raise StoreError(f"cannot open PostgreSQL store: {e}") from e
        self._load_identity()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self._schema_name!r})"

    @property
    def reachable(self) -> bool:
        """Whether PostgreSQL is taken to answer (the last connection or probe worked)."""
        return self._primary.unreachable is None

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]:
        return self._primary.connection()

    @contextlib.contextmanager
    def _read(self) -> Iterator[SqlCursor]:
        with self._reads.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[SqlCursor]:
        """A write transaction; once it commits, the head moves past what it numbered."""
        with self._connection() as conn:
            with conn.transaction():
                try:
                    yield conn
                finally:
                    numbering = self._numbering.pop(id(conn), None)
            if numbering is not None and numbering.taken:
                self._await_head(conn, numbering.last, None)

    def _sql(self, text: str) -> str:
        cached = self._sql_cache.get(text)
        if cached is None:
            if len(self._sql_cache) > 1000:
                self._sql_cache.clear()
            cached = self._sql_cache[text] = text.replace("?", "%s")
        return cached

    def _in_ids(self, column: str, ids: Collection[str]) -> tuple[str, Any]:
        return f"{column} = ANY(?)", list(ids)

    def _context_keys_from(self) -> str:
        return (
            "relationships CROSS JOIN LATERAL "
            "json_object_keys(relationships.caveat_context::json) AS k(key)"
        )

    def _lock_state_sql(self) -> str:
        return "SELECT head, oldest FROM store_state FOR UPDATE"

    # ---- change notifications ------------------------------------------------------------------

    @property
    def _channel(self) -> str:
        """The LISTEN/NOTIFY channel of this store's schema (an identifier: at most 63 bytes)."""
        return f"policyd_{self._schema_name}"[:63]

    def _begin(self, cur: SqlCursor) -> tuple[Revision, Validator]:
        """Number the next request of this transaction (see revisions.py).

        A plain write numbered its transaction in its first statement
        (``_write_plain``). Any other write takes the write gate alone first,
        waiting for the plain writes under way: a precondition, a delete by
        filter, a policy change or an ingest then reads a state no concurrent
        writer changes. It records each revision as it takes it, and reads the
        policy again each time (an earlier request of its group may have
        changed it).
        """
        numbering = self._numbering.get(id(cur))
        if numbering is not None and not numbering.alone:
            return numbering.next(), self._validator_for(cur, numbering.policy_revision)
        if numbering is None:
            numbering = self._number_alone(cur)
        revision = numbering.next()
        (policy_revision,) = self._exec(
            cur,
            "INSERT INTO revisions (revision, created_at) VALUES (?, ?) "
            "RETURNING (SELECT policy_revision FROM store_state)",
            (revision, self._now()),
        ).fetchone()
        return revision, self._validator_for(cur, policy_revision)

    def _number_alone(self, cur: SqlCursor) -> _Numbering:
        """Take the gate alone for this transaction and number it (``NUMBER_ALONE``).

        Called outside any request's savepoint (``_group_in`` calls it before
        them): a savepoint rolled back would release the gate and undo the
        offset's move while the transaction went on numbering.
        """
        self._exec(cur, "SELECT pg_advisory_xact_lock(?)", (self._gate,))
        self._exec(cur, "SELECT pg_current_xact_id()")
        base, policy_revision = _one_row(self._exec(cur, NUMBER_ALONE))
        numbering = _Numbering(base, policy_revision, offset=0, alone=True)
        self._numbering[id(cur)] = numbering
        return numbering

    def _group_in(self, cur: SqlCursor, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """SqlStore._group_in, numbered alone first unless it is a plain write's group."""
        if id(cur) not in self._numbering:
            self._number_alone(cur)
        return super()._group_in(cur, requests)

    def _apply_request(
        self, cur: SqlCursor, request: GroupRequest
    ) -> Revision | tuple[Revision, int]:
        """SqlStore._apply_request; a request that fails gives its revision back to the next."""
        numbering = self._numbering[id(cur)]
        taken = numbering.taken
        try:
            return super()._apply_request(cur, request)
        except PolicydError:
            numbering.taken = taken
            raise

    def _give_back(self, cur: SqlCursor, revision: Revision) -> Revision:
        """Undo ``_begin`` for a write that changed nothing; the revision it leaves.

        That is the previous request's of this transaction, or else the head.
        """
        self._exec(cur, "DELETE FROM revisions WHERE revision = ?", (revision,))
        numbering = self._numbering[id(cur)]
        numbering.taken -= 1
        if numbering.taken:
            return numbering.last
        head: Revision = self._exec(cur, "SELECT head FROM store_state").fetchone()[0]
        return head

    # ---- plain writes: numbered by transaction id, the gate shared ------------------------------

    def write(
        self,
        updates: Sequence[RelationshipUpdate],
        preconditions: Sequence[Precondition] = (),
    ) -> Revision:
        """Apply a batch atomically (see Writer.write); without preconditions, as a plain write."""
        if preconditions:
            return super().write(updates, preconditions)
        (revision,) = self._write_plain([WriteRequest(tuple(updates))], isolate=False)
        assert isinstance(revision, int)  # a failure raised instead
        return revision

    def write_group(self, requests: Sequence[GroupRequest]) -> list[Outcome]:
        """Apply requests in one transaction (see Writer.write_group); plain writes run as such."""
        writes = [r for r in requests if isinstance(r, WriteRequest) and not r.preconditions]
        if writes and len(writes) == len(requests):
            return self._write_plain(writes, isolate=True)
        return super().write_group(requests)

    def _write_plain(self, requests: Sequence[WriteRequest], *, isolate: bool) -> list[Outcome]:
        """Relationship writes without preconditions: no shared row touched before commit.

        Every writer used to take the ``store_state`` row lock and hold it to
        commit, so a transaction on one server held every other server's
        writes (issue 12). Here the transaction shares the write gate, locks
        the keys it writes (sorted, so two writers never wait on each other in
        a cycle), takes its transaction id and numbers its requests by it
        (revisions.py), all in its first message. Its last message records
        the revisions, commits, and moves the head (``ADVANCE``). Writers on
        other servers meet it only on the keys they share.

        Why the key locks: a writer reads the live row of each key it changes,
        and without the lock another writer could change that key between the
        read and the commit (READ COMMITTED sees only what committed before
        each statement). Why the gate: a write whose outcome depends on more
        than its own keys (a precondition, a delete by filter, a policy change
        validated against every row) takes it alone (``_number_alone``), so no
        plain write runs beside it. ``isolate`` gives each request a
        savepoint, as a group commit does; without it, a failure raises and
        rolls back all.
        """
        keys = sorted(
            {self._key_lock(u.relationship.key) for request in requests for u in request.updates}
        )
        for _ in range(_POLICY_RETRIES):
            try:
                return self._write_plain_once(requests, keys, isolate=isolate)
            except _PolicyMoved:
                continue
        raise StoreError("the policy kept changing under a write; retry it")

    def _write_plain_once(
        self, requests: Sequence[WriteRequest], keys: list[tuple[int, int]], *, isolate: bool
    ) -> list[Outcome]:
        """One attempt at ``_write_plain``; raises _PolicyMoved (rolling back) to try again.

        The first statement reads the policy and offset from the snapshot taken
        as it began, before it waited for the gate: a policy change (or an
        import's publish) holding the gate then commits unseen. ``FINISH_PLAIN``
        records the revisions only if both are still in force (found by
        ``test_a_plain_write_waiting_out_a_policy_change_is_checked_against_the_new_policy``);
        otherwise the transaction rolls back and the next attempt reads them again.
        """
        with self._connection() as conn:
            lock = literally(
                conn, LOCK_PLAIN_CALL, (self._gate, [a for a, _ in keys], [b for _, b in keys])
            )
            try:
                begun = conn.execute(f"BEGIN; {lock}".encode())
                begun.nextset()
                policy_revision, offset, numbered = _one_row(begun)
                numbering = _Numbering(offset + numbered, policy_revision, offset, alone=False)
                self._numbering[id(conn)] = numbering
                try:
                    if isolate:
                        outcomes = self._group_in(conn, requests)
                    else:
                        outcomes = [self._write_in(conn, requests[0].updates, ())]
                finally:
                    del self._numbering[id(conn)]
                revisions = [o for o in outcomes if isinstance(o, int)]
                if not revisions:
                    conn.execute(b"COMMIT")
                    return outcomes
                head = self._finish_plain(conn, revisions, numbering)
            except BaseException:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(b"ROLLBACK")
                raise
            self._await_head(conn, max(revisions), head)
        return outcomes

    def _finish_plain(
        self, conn: psycopg.Connection[tuple[Any, ...]], revisions: list[int], numbering: _Numbering
    ) -> Revision | None:
        """Record the revisions, COMMIT and advance the head, in one message; the head after.

        Sent as one message, nothing waits on a round trip to this process
        once the revisions are in (``literally`` says how). A failed statement
        skips the rest of the message, so a failed check never commits. The
        advance runs after the COMMIT, in a transaction of its own; should
        only it fail, the write stands and the caller advances again (None).
        """
        finish = literally(
            conn,
            FINISH_PLAIN_CALL,
            (numbering.policy_revision, numbering.offset, self._now(), revisions),
        )
        advance = literally(conn, ADVANCE_MESSAGE, self._advance_params)
        try:
            return int(_one_row_of_last(conn.execute(f"{finish}; COMMIT; {advance}".encode())))
        except psycopg.errors.NotNullViolation as e:
            raise _PolicyMoved from e
        except psycopg.Error:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.execute(b"ROLLBACK")
            committed = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM revisions WHERE revision = %s)", (revisions[0],)
            ).fetchone()
            if committed is None or not committed[0]:
                raise
            return None

    # ---- the head: moved to the stable point ----------------------------------------------------

    @functools.cached_property
    def _advance_params(self) -> tuple[int, int, str]:
        """The gate's two halves as ``pg_locks`` shows them, and the channel to notify."""
        unsigned = self._gate & 0xFFFFFFFFFFFFFFFF
        return (unsigned >> 32, unsigned & 0xFFFFFFFF, self._channel)

    def advance(self, conn: psycopg.Connection[tuple[Any, ...]] | None = None) -> Revision:
        """Move the head to the stable point (``ADVANCE``); the head after."""
        if conn is None:
            with self._connection() as own:
                return self.advance(own)
        message = literally(conn, ADVANCE_MESSAGE, self._advance_params)
        return int(_one_row_of_last(conn.execute(message.encode())))

    def _await_head(
        self, conn: psycopg.Connection[tuple[Any, ...]], revision: Revision, head: Revision | None
    ) -> None:
        """Return once the head has moved to ``revision`` (the write's own, committed).

        It cannot while a write numbered below it is still open; that write's
        own advance will move the head past both, and this one looks again
        meanwhile. An open write ends within the idle-in-transaction or the
        statement timeout (PostgreSQL ends it), so past both this raises: the
        write stands, but acknowledging it would hand out a revision no reader
        can read yet.
        """
        pause, longest = _HEAD_WAIT
        timeouts = self.timeouts
        give_up = time.monotonic() + timeouts.idle_in_transaction + timeouts.statement
        looks = 0
        while head is None or head < revision:
            if time.monotonic() > give_up:
                raise StoreError(
                    f"the write committed at revision {revision}, but an older write on "
                    "this store stayed open and readers cannot see it yet; retry to confirm"
                )
            if head is not None:
                time.sleep(pause)
                pause = min(pause * 2, longest)
            if looks % _ADVANCE_EVERY == 0:
                head = self.advance(conn)
            else:
                head = _one_row(conn.execute(b"SELECT head FROM store_state"))[0]
            looks += 1

    def _key_lock(self, key: RelationshipKey) -> tuple[int, int]:
        """The two-integer advisory lock of a relationship key in this store.

        PostgreSQL keeps two-integer advisory locks apart from one-bigint ones
        (the gate, migrations); a hash collision only makes two keys wait on
        each other.
        """
        digest = _lock_id(self._schema_name, *key)
        return (
            int.from_bytes(digest[:4], "big", signed=True),
            int.from_bytes(digest[4:], "big", signed=True),
        )

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a commit on any server; True if one came.

        One connection of its own LISTENs (not a pooled one: it stays
        subscribed). Any failure closes it and answers False, so the caller
        falls back to polling; the next call connects again.
        """
        try:
            if self._listener is None:
                listener = psycopg.connect(self._dsn, **self._connect_kwargs)
                listener.execute(f'LISTEN "{self._channel}"'.encode())
                self._listener = listener
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
            # Quiet for a while: move the head past a write whose server died between its
            # commit and its advance (nobody else would until the next write).
            with contextlib.suppress(StoreError):
                self.advance()
            return False
        except psycopg.Error:
            self._close_listener()
            return False

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(psycopg.Error):
                listener.close()

    def _import_in(self, cur: SqlCursor, relationships: Iterable[Relationship]) -> Revision:
        """Import with the write gate held only to publish the import, not to load it.

        An import that held back other writers while it loaded blocked every
        other server's writes for as long as it ran (a 40 s pause of an
        importing server held all writes for 66 s, measured for issue 12).

        Here the import reserves a revision far above the current ones
        (``IMPORT_RESERVE`` transaction ids past the snapshot's, plus a random
        amount, so concurrent imports differ), validates and COPYs its input
        into a temporary table, inserts it at that revision and checks it
        against every live row, all with no lock. Its rows are invisible to
        every other transaction until it commits. Only then does it take the
        gate alone to publish (``_PUBLISH``): the head jumps to the reserved
        revision in the same commit that makes the rows visible, and the
        offset moves so that every write after it numbers above it. A reader
        at any revision sees all of the import or none. The writes that
        committed meanwhile are checked for clashes and expired rows are
        retired (both small); a policy that changed meanwhile is checked
        again. Should so many transactions have started meanwhile that writes
        numbered at or past the reservation, the import publishes just above
        them instead and its rows move there.

        ``tests/store/test_postgres_writers.py`` stalls an import's input and
        commits single writes from another store meanwhile; ``policyd bench
        --sections postgres`` runs single writes from two stores beside an import.

        The first import into an empty store takes the gate first instead: it
        drops and rebuilds the secondary indexes, which locks the table anyway.
        """
        if not isinstance(cur, psycopg.Connection):
            raise TypeError("PostgresStore writes on psycopg connections")
        # The COPY lasts as long as its input: give it the bulk bound, for this transaction only.
        bulk_ms = int(self.timeouts.bulk_statement * 1000)
        cur.execute(f"SET LOCAL statement_timeout = {bulk_ms}".encode())
        cur.execute(b"DROP TABLE IF EXISTS pg_temp.import_staging")
        cur.execute(
            b"CREATE TEMPORARY TABLE import_staging ON COMMIT DROP AS "
            + f"SELECT {COLUMNS} FROM relationships WITH NO DATA".encode()
        )
        head, policy_revision, numbered_now = self._exec(
            cur,
            f"SELECT head, policy_revision, revision_offset + "
            f"(pg_snapshot_xmax(pg_current_snapshot())::text::bigint << {XID_SHIFT}) "
            f"FROM store_state",
        ).fetchone()
        # An earlier request of this transaction's group numbered it: the transaction holds
        # the gate alone anyway, and the next revision is its own.
        locked = id(cur) in self._numbering
        check = self._validator_for(cur, policy_revision).check
        with (
            cur.cursor() as c,
            c.copy(f"COPY import_staging ({COLUMNS}) FROM STDIN".encode()) as copy,
        ):
            for i, rel in enumerate(relationships):
                check(rel, f"relationships[{i}]")
                row = row_values(rel, 0)
                copy.write_row((*row[:6], *row[8:]))
        now = self._now()
        if (
            locked
            or not self._exec(cur, "SELECT EXISTS (SELECT 1 FROM relationships)").fetchone()[0]
        ):
            return self._import_locked(cur, policy_revision, now)
        # A temporary table is never analyzed by autovacuum: without statistics the
        # planner can pick a nested loop of scans for the joins below.
        cur.execute(b"ANALYZE import_staging")
        self._refuse_staged_clashes(cur, now)
        reserved = IMPORT_RESERVE + secrets.randbelow(IMPORT_RESERVE)
        revision: Revision = numbered_now + (reserved << XID_SHIFT)
        self._insert_staged(cur, revision)
        # The statistics must know the rows at the reserved revision (past their histogram,
        # the planner took them for one row and joined them with a scan per row: minutes,
        # under the lock, at 100k rows). ANALYZE sees this transaction's own rows.
        cur.execute(b"ANALYZE relationships")
        # Publish alone: the plain writes under way commit first, new ones wait for this one.
        self._exec(cur, "SELECT pg_advisory_xact_lock(?)", (self._gate,))
        published, policy_now = _one_row(self._exec(cur, _PUBLISH, (revision, revision)))
        if published != revision:
            # Writes numbered up to the reservation meanwhile: move only this import's rows
            # (a writer's row with one of these keys at that revision would have clashed
            # with ours in the primary key).
            self._exec(
                cur,
                f"UPDATE relationships SET created_revision = ? WHERE created_revision = ? "
                f"AND ({KEY}) IN (SELECT {KEY} FROM import_staging)",
                (published, revision),
            )
            revision = published
        self._exec(
            cur, "INSERT INTO revisions (revision, created_at) VALUES (?, ?)", (revision, now)
        )
        cur.execute("SELECT pg_notify(%s, '')", (self._channel,))
        self._recheck_policy(cur, policy_revision, policy_now)
        self._refuse_clashes(cur, revision, now, since=head)
        self._retire_expired(cur, revision, now)
        return revision

    def _import_locked(
        self, cur: psycopg.Connection[tuple[Any, ...]], policy_revision: Revision, now: int
    ) -> Revision:
        """Move the staged rows in at the next revision, holding the gate alone from the start.

        For an empty store (the indexes are dropped and rebuilt around the load)
        and for an import in a group whose transaction holds the gate already.
        """
        revision, _ = self._begin(cur)
        self._recheck_policy(cur, policy_revision, self._validator[0])
        empty = not self._exec(cur, "SELECT EXISTS (SELECT 1 FROM relationships)").fetchone()[0]
        if empty:
            for name in SECONDARY_INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {name}".encode())
        self._insert_staged(cur, revision)
        if empty:
            for ddl in SECONDARY_INDEXES.values():
                cur.execute(ddl.encode())
            # The table went from empty to loaded in one go: give the planner statistics now
            # rather than when autovacuum gets to it (the next import's joins depend on them).
            cur.execute(b"ANALYZE relationships")
        else:
            self._finish_import(cur, revision, now)
        return revision

    def _refuse_staged_clashes(self, cur: psycopg.Connection[tuple[Any, ...]], now: int) -> None:
        """Raise AlreadyExistsError if a staged row is live in the store already."""
        same_key = " AND ".join(f"o.{c} = s.{c}" for c in KEY_COLUMNS)
        clash = self._exec(
            cur,
            f"SELECT {', '.join('s.' + c for c in KEY_COLUMNS)} FROM import_staging s "
            f"JOIN relationships o ON {same_key} WHERE o.deleted_revision = {LIVE} "
            f"AND (o.expires_at IS NULL OR o.expires_at > ?) LIMIT 1",
            (now,),
        ).fetchone()
        if clash is not None:
            rel = Relationship.from_key(clash)
            raise AlreadyExistsError(f"{rel} already exists", field="relationships")

    def _insert_staged(self, cur: psycopg.Connection[tuple[Any, ...]], revision: Revision) -> None:
        try:
            self._exec(
                cur,
                f"INSERT INTO relationships ({ROW_COLUMNS}) SELECT {KEY}, ?, {LIVE}, {ATTRS} "
                f"FROM import_staging",
                (revision,),
            )
        except psycopg.errors.UniqueViolation as e:
            raise AlreadyExistsError(
                f"an imported relationship is repeated in the input: {e.diag.message_detail}",
                field="relationships",
            ) from e

    def _recheck_policy(
        self,
        cur: psycopg.Connection[tuple[Any, ...]],
        staged_under: Revision,
        now_in_force: Revision,
    ) -> None:
        """Validate the staged rows again if the policy changed since they were checked."""
        if now_in_force == staged_under:
            return
        validator = self._validator_for(cur, now_in_force)
        staged = cur.execute(f"SELECT {COLUMNS} FROM import_staging".encode())
        for i, row in enumerate(staged):
            validator.check(relationship_from_row(row), f"relationships[{i}]")

    # ---- reads on a hot standby ----------------------------------------------------------------

    def snapshot(self, revision: Revision | None = None) -> SnapshotReader:
        """A reader at ``revision``: on the standby once it has replayed it, else on the primary.

        Revisions (the head, a token's) are the primary's. The standby has
        replayed revision R once its own copy of ``store_state`` says head ≥ R:
        WAL is replayed in commit order and the head moved past R only once
        everything at or below R had committed, so all of it is there too. A
        consistency token is thus honoured on the standby by waiting for its
        replay position, counted in revisions rather than WAL positions, for at
        most ``replica_wait``.
        """
        at = self.head_revision() if revision is None else revision
        replica = self._replica
        if replica is None:
            return SqlSnapshot(self, at)
        if self._replayed(replica, at):
            self.replica_reads += 1
            return SqlSnapshot(replica, at)
        self.primary_fallbacks += 1
        return SqlSnapshot(self, at)

    def _replayed(self, replica: PostgresStore, revision: Revision) -> bool:
        """Whether the standby has replayed ``revision``, waiting a bounded time for it."""
        if revision <= self._replica_head:
            return True
        began = time.monotonic()
        deadline = began + wait_bound(self._replica_wait)
        pause = 0.001
        while True:
            try:
                head = replica.head_revision()  # the standby's store_state
            except StoreError:
                return False  # the standby is down or slow: the primary serves
            self._replica_head = max(self._replica_head, head)
            if head >= revision:
                return True
            if self._flushed_at < began:
                self._flush_primary()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.02)

    def _flush_primary(self) -> None:
        """Make the primary flush its WAL now, so that the head's last advance streams out.

        The advance commits with synchronous_commit off, so its WAL waits for
        the next flushed commit or the WAL writer (``wal_writer_delay``, 200 ms
        by default), and a read on the standby at a fresh write's token waited
        that long (p50 202 ms, measured). A commit that wrote WAL is flushed,
        with all WAL before it; the smallest such write is a transactional
        logical message (a transaction id alone writes none, and its commit
        was not flushed: measured, no change). One flush started after a wait
        began serves every wait that began before it. Should the role not be
        allowed to emit one, the wait is as long as before.
        """
        self._flushed_at = time.monotonic()
        with contextlib.suppress(StoreError, psycopg.Error), self._connection() as conn:
            conn.execute(b"BEGIN; SELECT pg_logical_emit_message(true, 'policyd', ''); COMMIT")

    def _select_at(self, data: str, params: Sequence[Any], revision: Revision) -> list[Row]:
        try:
            return super()._select_at(data, params, revision)
        except _RecoveryConflict as e:
            return self._after_conflict(e)._select_at(data, params, revision)

    def _fetch_one(self, text: str, params: Sequence[Any]) -> Row:
        try:
            return super()._fetch_one(text, params)
        except _RecoveryConflict as e:
            return self._after_conflict(e)._fetch_one(text, params)

    def _after_conflict(self, conflict: _RecoveryConflict) -> PostgresStore:
        """The primary's store, to read once more what the standby cancelled (counted, logged).

        A standby cancels a query that holds up WAL replay for longer than its
        ``max_standby_streaming_delay`` (a lock replay needs, row versions a
        VACUUM removed). Every snapshot read is one statement at a revision the
        primary also has, so the primary answers it the same.
        """
        primary = self._primary_store
        primary.conflict_retries += 1
        LOG.info("reading again on the primary: %s", conflict)
        return primary

    def opener(self) -> Callable[[], PostgresStore]:
        """Connects to the same database and schema again."""
        return functools.partial(
            PostgresStore,
            self._dsn,
            schema_name=self._schema_name,
            clock=self.clock,
            timeouts=self.timeouts,
        )

    def _many(self, cur: SqlCursor, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if not isinstance(cur, psycopg.Connection):
            raise TypeError("PostgresStore writes on psycopg connections")
        with cur.cursor() as c:
            c.executemany(text.encode(), rows)

    def drop(self) -> None:
        """Drop this store's PostgreSQL schema and everything in it (tests use it to clean up)."""
        with self._connection() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self._schema_name}" CASCADE'.encode())

    def close(self) -> None:
        """Close the connection pools and the listening connection."""
        self._close_listener()
        if self._replica is not None:
            self._replica._reads.close()
        self._primary.close()
