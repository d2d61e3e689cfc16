"""Package store.postgres.revisions numbers PostgreSQL writes by their transaction ids.

SpiceDB's PostgreSQL datastore orders writes by PostgreSQL's own transaction
ids (``pg_current_xact_id()``, an ``xid8``) and reads at snapshots
(``pg_current_snapshot()``), so that no two writers meet on one row. policyd
keeps integer revisions (tokens, the change log and the in-memory index all
count in them) and takes them from the same source:

    revision = revision_offset + (xid << XID_SHIFT) + ordinal

``xid`` is the writing transaction's id, taken once it holds the write gate;
``ordinal`` numbers the requests of a group (from 1); ``revision_offset``, a
column of ``store_state``, only grows, and only under the gate held alone
(an import publishing far above, ``bump_offset``). Two writers therefore
number their revisions without touching any shared row, and a writer that
started after another's commit was acknowledged has the larger xid, hence
the larger revisions: "new enemy" order holds. Two writers of one key take
turns on its advisory lock and the second gets its xid after the first
committed.

Transactions commit out of xid order, so a revision is not readable the
moment it commits: the head (``store_state.head``, what readers, followers
and standbys see) moves only to a *stable* point, below every revision an
unfinished writer may still commit. ``ADVANCE`` finds it from PostgreSQL's
own state: a snapshot's ``xmax`` (every xid below it is assigned) and the
xids of the transactions holding this store's write gate, read from
``pg_locks`` after the snapshot. Every writer takes the gate before its xid,
so a writer missing from ``pg_locks`` either finished or will be numbered
above the snapshot's ``xmax``. The head then moves to the largest committed
revision below the oldest such xid. It runs after each write's commit (in
the same message), when a follower times out waiting, and never waits for
the row: ``SKIP LOCKED`` leaves it to whoever holds it.
"""

from __future__ import annotations

from typing import Any

import psycopg

XID_SHIFT = 16
"""Bits of a revision below its transaction id: a group's requests are numbered in them."""

MAX_ORDINAL = (1 << XID_SHIFT) - 1
"""How many revisions one transaction can number (a group commit sends at most 1,000)."""

LOCK_PLAIN = f"""
SELECT s.policy_revision, s.revision_offset, x.xid
FROM store_state s
CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock_shared($1)::text AS shared) g
CROSS JOIN LATERAL (
    SELECT count(pg_advisory_xact_lock(k.a, k.b)) AS locked
    FROM unnest($2::int4[], $3::int4[]) AS k(a, b) WHERE g.shared IS NOT NULL
) k
CROSS JOIN LATERAL (
    SELECT pg_current_xact_id()::text::bigint << {XID_SHIFT} AS xid WHERE k.locked IS NOT NULL
) x
"""
"""A plain write's first statement: the write gate shared, then its keys' locks in the order
given, then its transaction id (each lateral reads the one before, so runs after it), and the
policy and offset in force as the statement began (``FINISH_PLAIN`` checks they still are)."""

FINISH_PLAIN = """
INSERT INTO revisions (revision, created_at)
SELECT CASE WHEN s.policy_revision = $1 AND s.revision_offset = $2 THEN r.revision END, $3
FROM store_state s CROSS JOIN unnest($4::bigint[]) AS r(revision)
"""
"""A plain write's last statement: record its revisions. The policy and offset it read came
from a snapshot taken before it waited for the gate; if a policy change or an import's
publish committed meanwhile, the revisions it inserts are NULL and it fails
(NotNullViolation), so the COMMIT sent after it does not run and the write starts again."""

NUMBER_ALONE = f"""
UPDATE store_state SET revision_offset = revision_offset + {1 << XID_SHIFT}
RETURNING revision_offset - {1 << XID_SHIFT}
    + (pg_snapshot_xmax(pg_current_snapshot())::text::bigint << {XID_SHIFT}),
    policy_revision
"""
"""How a write holding the gate alone numbers its revisions (run once it has an xid, in a
statement of its own, so that the snapshot's xmax is above that xid). Its own xid may predate
the gate (an import's does), so it numbers from the snapshot's xmax instead, and moves the
offset up by one xid's worth so that writers after it number above it."""

ADVANCE = f"""
WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
locks AS MATERIALIZED (
    SELECT l.locktype, l.database, l.classid, l.objid, l.objsubid, l.virtualtransaction,
        l.transactionid, l.mode, l.granted
    FROM snap CROSS JOIN LATERAL (SELECT * FROM pg_locks WHERE snap.s IS NOT NULL) l
),
gate AS (
    SELECT t.transactionid::text::bigint AS xid32
    FROM locks g JOIN locks t ON t.virtualtransaction = g.virtualtransaction
    WHERE g.locktype = 'advisory' AND g.granted AND g.objsubid = 1
        AND g.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND g.classid::text::bigint = $1 AND g.objid::text::bigint = $2
        AND t.locktype = 'transactionid' AND t.granted AND t.mode = 'ExclusiveLock'
),
xmax AS (SELECT pg_snapshot_xmax(s)::text::bigint AS xid FROM snap),
oldest AS (
    -- How far below xmax the oldest xid holding the gate is (32-bit ids, wrapped).
    SELECT xmax.xid - greatest(0, COALESCE(max(
        ((xmax.xid % 4294967296) - gate.xid32 + 6442450944) % 4294967296 - 2147483648
    ), 0)) AS xid
    FROM xmax LEFT JOIN gate ON true GROUP BY xmax.xid
),
stable AS (
    SELECT s.revision_offset + (oldest.xid << {XID_SHIFT}) - 1 AS bound
    FROM store_state s, oldest
),
target AS (
    SELECT max(r.revision) AS head FROM revisions r, stable WHERE r.revision <= stable.bound
),
moved AS (
    UPDATE store_state SET head = target.head FROM target
    WHERE store_state.head < target.head
        AND store_state.id IN (SELECT id FROM store_state FOR UPDATE SKIP LOCKED)
    RETURNING store_state.head
),
told AS (SELECT pg_notify($3, '') FROM moved)
SELECT COALESCE((SELECT head FROM moved), (SELECT head FROM store_state)),
    (SELECT count(*) FROM told)
"""
"""Move the head to the stable point (see the module docstring) and notify followers; returns
the head after (or as this statement began, if another session held the row) and whether this
moved it. Run in a transaction of its own with synchronous_commit off: the head is derived from
PostgreSQL's state and is found again if a crash loses it."""

FUNCTIONS = [
    "CREATE OR REPLACE FUNCTION policyd_lock_plain(bigint, int4[], int4[]) "
    "RETURNS TABLE (o_policy bigint, o_offset bigint, o_numbered bigint) "
    f"LANGUAGE plpgsql AS $body$ BEGIN RETURN QUERY {LOCK_PLAIN}; END $body$",
    "CREATE OR REPLACE FUNCTION policyd_finish_plain(bigint, bigint, bigint, bigint[]) "
    f"RETURNS void LANGUAGE plpgsql AS $body$ BEGIN {FINISH_PLAIN}; END $body$",
    "CREATE OR REPLACE FUNCTION policyd_advance(bigint, bigint, text) "
    "RETURNS TABLE (o_head bigint, o_moved bigint) "
    f"LANGUAGE plpgsql AS $body$ BEGIN RETURN QUERY {ADVANCE}; END $body$",
]
"""The three statements above as PL/pgSQL functions in the store's schema (a migration).

They are sent inside messages of several statements (the simple query
protocol), which PostgreSQL would otherwise plan afresh every time: planning
``ADVANCE`` alone took 0.65 ms of its 1.6 ms. PL/pgSQL keeps each statement's
plan for the session. Named prepared statements would too, but psycopg
deallocates every prepared statement of a connection (``DEALLOCATE ALL``)
after a rollback, which dropped ours under load; and PgBouncer in transaction
pooling keeps none."""

LOCK_PLAIN_CALL = "SELECT * FROM policyd_lock_plain(%s, %s::int4[], %s::int4[])"
FINISH_PLAIN_CALL = "SELECT policyd_finish_plain(%s, %s, %s, %s::bigint[])"
ADVANCE_MESSAGE = (
    "BEGIN; SET LOCAL synchronous_commit TO OFF; SELECT * FROM policyd_advance(%s, %s, %s); COMMIT"
)
"""``ADVANCE`` as a message of its own (or the tail of a plain write's last message)."""


def literally(conn: psycopg.Connection[tuple[Any, ...]], text: str, params: Any) -> str:
    """``text`` with ``params`` written in as SQL literals, to send with other statements.

    Several statements in one message go by the simple query protocol, which
    takes no parameters; psycopg's client-side binding quotes them instead.
    Plain writes use it for their first and last messages (BEGIN with the
    locks; the revisions, COMMIT and the head's advance), saving round trips.
    Their values are integers, arrays of them and a channel name this store
    made from its schema name.
    """
    return psycopg.ClientCursor(conn).mogrify(text, params)


def last_row(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The first row of the last result that has rows, of a message of several statements."""
    row = cursor.fetchone() if cursor.description else None
    while cursor.nextset():
        if cursor.description:
            row = cursor.fetchone()
    return row
