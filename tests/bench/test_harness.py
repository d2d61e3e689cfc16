"""Smoke tests: the benchmark harness runs at tiny scale and every answer it checks is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyd.bench import harness, workloads
from policyd.bench.inprocess import Limits, measure_policyd
from policyd.bench.measure import percentile, table, time_calls

TINY = Limits(seconds=0.05, max_checks=500, max_writes=20, list_queries=2)


@pytest.mark.parametrize(
    "name", ["chain-5", "deep-4", "groups", "social", "peers"], ids=lambda n: n
)
def test_workloads_are_deterministic_for_a_seed(name: str) -> None:
    first = workloads.build(name, 0.0005, seed=3)
    again = workloads.build(name, 0.0005, seed=3)
    assert [r.key for r in first.relationships] == [r.key for r in again.relationships]
    assert first.queries == again.queries
    assert len({r.key for r in first.relationships}) == len(first.relationships)


def test_unknown_workload_names_are_refused() -> None:
    assert not workloads.known("nested")
    with pytest.raises(ValueError, match="unknown workload"):
        workloads.build("nested")


@pytest.mark.parametrize(
    "workload",
    [workloads.chain(6, members=50), workloads.groups(60, 8, 200), workloads.social(60, 300)],
    ids=lambda w: w.name,
)
def test_inprocess_measures_every_number_with_no_wrong_answer(
    workload: workloads.Workload, tmp_path: Path
) -> None:
    expected = sum(q.expected is not None for q in workload.queries)
    assert expected == len(workload.queries)
    row = measure_policyd(workload, tmp_path, TINY)
    assert row["wrong"] == 0
    for key in (
        "check_per_s",
        "check_p99_ms",
        "batch100_per_s",
        "list_first100_ms",
        "list_subjects_ms",
        "write_rels_per_s",
        "bulk_rels_per_s",
        "peak_rss_mib",
        "db_mib",
    ):
        assert row[key] is not None, key


def test_harness_main_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    status = harness.main(
        [
            "--sections",
            "inprocess",
            "--workloads",
            "chain-4,groups,social",
            "--scale",
            "0.0005",
            "--seconds",
            "0.05",
            "--no-isolate",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "cores" in printed
    assert "check_per_s" in printed
    results = json.loads(out.read_text())
    assert results["machine"]["cores"] >= 1
    assert [r["wrong"] for r in results["inprocess"]] == [0, 0, 0]


def test_harness_refuses_unknown_workloads() -> None:
    with pytest.raises(SystemExit):
        harness.main(["--workloads", "nested", "--sections", "inprocess"])


def test_pg_startup_counts_default_to_a_million_and_zero_skips() -> None:
    assert harness.parser().parse_args([]).pg_startup == [1_000_000]
    given = harness.parser().parse_args(["--pg-startup", "1000000,10_000_000"])
    assert given.pg_startup == [1_000_000, 10_000_000]
    assert harness.parser().parse_args(["--pg-startup", "0"]).pg_startup == []
    assert harness.parser().parse_args(["--pg-startup", ""]).pg_startup == []
    with pytest.raises(SystemExit):
        harness.parser().parse_args(["--pg-startup", "1M"])


def test_measure_helpers() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([], 0.99) == 0.0
    timing = time_calls(lambda x: x, [1, 2, 3], seconds=10.0, max_calls=7)
    assert timing.calls == 7
    text = table([{"name": "a", "n": 1200}, {"name": "bb", "n": None}])
    assert text.splitlines()[1].split() == ["a", "1,200"]
    assert text.splitlines()[2].split() == ["bb", "-"]
