"""The cold/warm and write-mix sections run against real servers and count no wrong answer."""

from __future__ import annotations

from pathlib import Path

from policyd.bench import workloads
from policyd.bench.serving import ceiling_ratios, measure_cold_warm, measure_write_mix, writes_to


def test_cold_warm_measures_every_row_with_no_wrong_answer(tmp_path: Path) -> None:
    workload = workloads.groups(50, 8, 100, queries=12_000)
    rows = measure_cold_warm(
        workload, tmp_path, workers=1, seconds=0.1, processes=1, working_set=200
    )
    measured = [r for r in rows if r["server"] != "ratio" and "skipped" not in r]
    assert {(r["cache"], r["queries"], r["rpc"]) for r in measured if r["cache"] != "-"} >= {
        ("off", "distinct", "Check"),
        ("off", "distinct", "BatchCheck(100)"),
        ("on", "distinct", "Check"),
        ("on", "200 repeated", "BatchCheck(100)"),
    }
    assert all(r.get("wrong", 0) == 0 for r in measured)
    assert all(r["calls"] for r in measured)
    repeated = [r for r in measured if r["queries"] == "200 repeated"]
    assert all(isinstance(r["hit_ratio"], float) for r in repeated)


def test_ceiling_ratios_divide_cold_checks_by_the_empty_rpc_of_the_same_driver() -> None:
    rows: list[dict[str, object]] = [
        {
            "server": "grpc.aio empty x2",
            "cache": "-",
            "rpc": "empty (bytes)",
            "driver": "h2load c4",
        },
        {"server": "policyd --workers 2", "cache": "off", "rpc": "Check", "driver": "h2load c4"},
    ]
    rows[0]["per_s"], rows[1]["per_s"] = 1000, 700
    (ratio,) = ceiling_ratios(rows)
    assert ratio["ratio"] == 0.7
    assert ratio["driver"] == "h2load"


def test_write_mix_measures_checks_and_writes(tmp_path: Path) -> None:
    workload = workloads.groups(50, 8, 100)
    rows = measure_write_mix(
        workload, tmp_path, workers=1, seconds=0.2, processes=1, working_set=200
    )
    assert [(r["writes"], r["rpc"]) for r in rows] == [
        ("0%", "Check"),
        ("10%, random resources", "Check"),
        ("10%, random resources", "write"),
        ("10%, the queried resources", "Check"),
        ("10%, the queried resources", "write"),
    ]
    assert all(r["wrong"] == 0 and r["calls"] for r in rows)
    assert all(isinstance(r["hit_ratio"], float) for r in rows if r["rpc"] == "Check")


def test_writes_to_the_queried_resources_are_new_and_shaped_like_existing_ones() -> None:
    workload = workloads.groups(50, 8, 100, queries=30)
    writes = writes_to(workload.queries, workload.relationships, 40)
    assert len(writes) == 40
    assert {w.resource for w in writes} <= {q.resource for q in workload.queries}
    existing = {r.key for r in workload.relationships}
    shapes = {
        (r.resource, r.relation, r.subject.type, r.subject.relation) for r in workload.relationships
    }
    for write in writes:
        assert write.key not in existing
        assert (
            write.resource,
            write.relation,
            write.subject.type,
            write.subject.relation,
        ) in shapes
