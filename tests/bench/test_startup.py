"""The start-up benchmark starts a real `policyd serve` four ways and every start answers right."""

from __future__ import annotations

from pathlib import Path

from policyd.bench import workloads
from policyd.bench.startup import measure_startup


def test_every_start_answers_its_first_check_right(tmp_path: Path) -> None:
    workload = workloads.groups(50, 8, 100, queries=10)
    rows = measure_startup(workload, tmp_path)
    assert [r["start"] for r in rows] == [
        "no snapshot",
        "snapshot path, no file: build, save",
        "from the snapshot",
        "from a corrupt snapshot: rebuild",
    ]
    assert [r["wrong"] for r in rows] == [0, 0, 0, 0]
    assert rows[0]["snapshot_mib"] == 0  # "off" writes none
    assert all(r["rels"] == len(workload.relationships) for r in rows)
    assert all(int(r["rss_mib"]) > 0 for r in rows)  # type: ignore[call-overload]
