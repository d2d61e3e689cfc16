"""The checkUserAccess load generator drives a real `policyd serve` and every answer is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyd.bench import harness
from policyd.bench.xrpc_load import measure_xrpc, verify_costs


def test_xrpc_load_gets_only_right_answers(tmp_path: Path) -> None:
    rows = measure_xrpc(tmp_path, seconds=0.2, connections=(1, 2))
    assert [(r["authority"], r["connections"]) for r in rows] == [
        ("ES256K, did:plc", 1),
        ("ES256K, did:plc", 2),
        ("ES256, did:web", 1),
        ("ES256, did:web", 2),
    ]
    for row in rows:
        assert row["requests"]
        assert (row["not_200"], row["wrong"]) == (0, 0)


def test_every_library_verifies() -> None:
    rows = verify_costs(0.01)
    assert [r["alg"] for r in rows] == ["ES256K", "ES256K", "ES256"]
    assert all(r["us_per_verify"] for r in rows)


def test_policyd_bench_prints_the_xrpc_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert harness.main(["--sections", "xrpc", "--seconds", "0.1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checkUserAccess over XRPC" in printed
    assert "us_per_verify" in printed
    assert "req_per_s" in printed
    results = json.loads(out.read_text())["xrpc"]
    assert {r["not_200"] for r in results["load"]} == {0}
