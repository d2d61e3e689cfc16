"""The load driver sends serialized requests from client processes and verifies every answer."""

from __future__ import annotations

import secrets
from pathlib import Path

from policyd.bench import workloads
from policyd.bench.driver import (
    Calls,
    Load,
    Mix,
    batch_calls,
    check_calls,
    drive,
    one,
    write_calls,
)
from policyd.bench.grpc_load import load_database, serve_process
from policyd.bench.inprocess import write_samples


def test_calls_split_distinct_requests_and_share_a_working_set() -> None:
    queries = workloads.groups(20, 4, 50, queries=10).queries
    distinct = check_calls(queries)
    parts = [distinct.part(i, 3).bodies for i in range(3)]
    assert sorted(b for part in parts for b in part) == sorted(distinct.bodies)
    working = check_calls(queries, repeat=True)
    assert working.part(1, 3) == working
    batches = batch_calls(queries, size=4)
    assert len(batches.bodies) == 2  # the short tail is dropped
    assert [len(e) for e in batches.expected] == [4, 4]


def test_a_mix_interleaves_by_weight() -> None:
    checks, writes = Calls("a", "/a", (b"",)), Calls("b", "/b", (b"",))
    assert Mix(((checks, 3), (writes, 1))).pattern() == [0, 0, 0, 1]


def test_drive_verifies_answers_and_stops_when_distinct_requests_run_out(tmp_path: Path) -> None:
    workload = workloads.groups(50, 8, 100, queries=400)
    db = tmp_path / "driven.db"
    load_database(workload, db)
    token = secrets.token_hex(8)
    with serve_process(db, 1, token) as served:
        load = Load(served.target, token, seconds=30, processes=2, in_flight=2, channels=2)
        rows = drive(load, one(check_calls(workload.queries[:40])))
        assert rows[0]["calls"] == 40
        assert rows[0]["wrong"] == 0
        assert "used up" in str(rows[0]["note"])

        load = Load(served.target, token, seconds=0.3, processes=1, in_flight=2, max_calls=60)
        mix = Mix(
            (
                (batch_calls(workload.queries, repeat=True), 2),
                (write_calls(write_samples(workload.relationships, 100, seed=1)), 1),
            )
        )
        batch, write = drive(load, mix)
        assert batch["rpc"] == "BatchCheck(100)"
        assert batch["wrong"] == 0
        assert batch["calls"]
        assert batch["decisions_per_s"]
        assert write["rpc"] == "write"
        assert write["calls"]
        assert write["errors"] is None
