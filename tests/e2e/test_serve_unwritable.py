"""``policyd serve`` on a full disk: it starts, reads, refuses writes, then resumes them.

Writes fail UNAVAILABLE while the disk is full and succeed again once it has
room, with no restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.errors import StoreUnwritableError
from policyd.relationship import parse_relationship
from policyd.store.sqlite import SqliteStore
from tests.e2e.server import POLICY_FILE, ServerFactory
from tests.store.disks import fill, small_disk

OWNER = parse_relationship("space:cats#owner@account:did:plc:alice")
MEMBER = parse_relationship("space:cats#member@account:did:plc:bob")


def test_serve_starts_on_a_full_disk_and_writes_resume_when_space_is_freed(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        store = SqliteStore(disk / "policyd.db")
        engine = Engine(store)
        engine.write_policy(POLICY_FILE.read_text())
        engine.import_relationships([OWNER])
        store.close()  # closed cleanly: the next open must make its -shm file, which needs room
        filler = fill(disk)
        server = start_server("--db", str(disk / "policyd.db"))
        with server.client(retries=0) as client:
            assert client.check(OWNER.resource, "moderate", OWNER.subject).allowed
            with pytest.raises(StoreUnwritableError, match="disk is full or it is read-only"):
                client.touch([MEMBER])
            filler.unlink()
            token = client.touch([MEMBER])
            fresh = Consistency.at_least_as_fresh(token)
            assert client.check(MEMBER.resource, "read", MEMBER.subject, consistency=fresh).allowed
        assert server.terminate() == 0
