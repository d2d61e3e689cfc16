"""The gRPC load generator drives a real `policyd serve` on loopback and counts no wrong answer."""

from __future__ import annotations

from pathlib import Path

from policyd.bench import workloads
from policyd.bench.grpc_load import measure_grpc


def test_grpc_load_runs_every_rpc_with_no_wrong_answer(tmp_path: Path) -> None:
    workload = workloads.groups(50, 8, 100, queries=300)
    rows = measure_grpc(
        workload,
        tmp_path,
        workers=1,
        clients=[1],
        seconds=0.2,
        max_requests=200,
        h2load_requests=200,
    )
    measured = [r for r in rows if "skipped" not in r]
    assert {r["rpc"] for r in measured} >= {"empty (health)", "Check", "BatchCheck(100)"}
    assert all(r.get("wrong", 0) == 0 for r in measured)
    assert all(r["calls"] for r in measured)
