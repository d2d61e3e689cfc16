"""The postgres bench section runs against the test PostgreSQL (no timings asserted)."""

from __future__ import annotations

from policyd.bench.postgres import postgres_rows


def test_the_postgres_section_measures_every_row(pg_dsn: str) -> None:
    rows = postgres_rows(pg_dsn, None, count=500, seconds=0.3)
    measures = [str(r["measure"]) for r in rows]
    assert measures == [
        "import 500, empty store",
        "import 500, non-empty store",
        "single writes, 2 servers",
        "single writes, 2 servers beside a 500 import",
        "propagation A to B, 300 writes",
    ]
    assert all(int(r["per_s"]) > 0 for r in rows if "per_s" in r)
    assert all(0 <= float(r["p50_ms"]) <= float(r["p99_ms"]) for r in rows if "p50_ms" in r)
