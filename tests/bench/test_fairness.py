"""The fairness section: first subjects, and Checks beside heavy calls and idle streams."""

from __future__ import annotations

from pathlib import Path

from policyd.bench import workloads
from policyd.bench.fairness import measure_fairness


def test_fairness_measures_checks_beside_heavy_calls_and_idle_streams(tmp_path: Path) -> None:
    workload = workloads.chain(4, members=500, queries=200)
    # Patience only bounds waiting for the calls to show as in flight: generous, since a loaded
    # machine takes seconds to spawn the stream holder, and it returns as soon as they show.
    rows = measure_fairness(workload, tmp_path, seconds=0.2, heavy=2, streams=20, patience=60)
    by_scenario = {str(r["scenario"]): r for r in rows}
    first = by_scenario["ListSubjects, limit 100"]
    assert first["subjects_read"] == 100
    assert isinstance(first["first_p50_ms"], float)
    checks = [r for r in rows if r.get("rpc") == "Check"]
    assert [r["scenario"] for r in checks] == [
        "idle",
        "2 ListSubjects (all) running",
        "20 idle Watch streams open",
        "idle, again",
    ]
    assert all(r["wrong"] == 0 and r["calls"] for r in checks)
    assert by_scenario["20 idle Watch streams open"]["streams_at_start"] == 20
