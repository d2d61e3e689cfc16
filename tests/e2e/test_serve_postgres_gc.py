"""Scheduled GC on one ``policyd serve`` passes another server's index: that server re-syncs.

Server B is frozen (SIGSTOP) while server A writes and collects with a zero
window, so B's index falls behind the oldest revision the store keeps; once
B runs again its follower finds the change log collected past it, reloads the
index and answers from the new state, never OUT_OF_RANGE, with no restart.
"""

from __future__ import annotations

import os
import signal
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from policyd import Consistency, parse_relationship
from policyd.filters import RelationshipFilter
from tests.e2e.server import BOB, CAROL, POLICY_FILE, POST, SPACE_WITH_A_POST, ServerFactory
from tests.store.clusters import wait_until

pytestmark = pytest.mark.postgres


def state(pg_url: str, column: str) -> int:
    """A column of the store's ``store_state`` row (``oldest``, ``head``), read from its table."""
    parts = urlsplit(pg_url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(parts._replace(query="").geturl()) as conn:
        row = conn.execute(f'SELECT {column} FROM "{schema}".store_state'.encode()).fetchone()
    assert row is not None
    value: int = row[0]
    return value


def test_a_server_behind_the_gc_point_resyncs_itself(
    start_server: ServerFactory, pg_url: str
) -> None:
    collector = start_server(
        "--store", "postgres", "--dsn", pg_url, "--policy", str(POLICY_FILE),
        "--gc-every", "0.2", "--gc-window", "0",
    )  # fmt: skip
    behind = start_server("--store", "postgres", "--dsn", pg_url)
    with collector.client() as a, behind.client() as b:
        token = a.touch(parse_relationship(r) for r in SPACE_WITH_A_POST)
        assert b.check(POST, "view", BOB, consistency=Consistency.at_least_as_fresh(token))

        os.kill(behind.process.pid, signal.SIGSTOP)
        try:
            a.touch([parse_relationship(f"space:cats#member@{CAROL}")])
            a.delete(
                RelationshipFilter(resource_type="space", resource_id="cats", subject_id=BOB.id)
            )
            deleted = state(pg_url, "head")
            later = a.touch([parse_relationship("space:dogs#member@account:did:plc:dan")])
            # B's index is at the setup's revision; the collector passes bob's delete.
            assert wait_until(lambda: state(pg_url, "oldest") >= deleted)
        finally:
            os.kill(behind.process.pid, signal.SIGCONT)

        # minimize_latency reads B's index: it must come to the new state by itself.
        assert wait_until(lambda: b.check(POST, "view", CAROL).allowed)
        assert not b.check(POST, "view", BOB).allowed
        fresh = Consistency.at_least_as_fresh(later)
        assert b.check(POST, "view", CAROL, consistency=fresh).allowed
        assert not b.check(POST, "view", BOB, consistency=fresh).allowed
    assert any("the index was reloaded" in line for line in behind.stderr)
